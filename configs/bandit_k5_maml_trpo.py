"""MAML-TRPO on 5-armed Bernoulli bandits, pytorch-maml-rl's bandit-k5-n10 config.

Source: tristandeleu/pytorch-maml-rl configs/maml/bandit/bandit-k5-n10.yaml (Bandit-K5-v0: each task draws every
arm's success probability uniformly from [0, 1]; an episode is one pull): categorical 32-32 ReLU policy, 10
trajectories per task, one inner step of 0.5, gamma 0.95, GAE lambda 1.0, 20 tasks per meta-iteration, TRPO with
max KL 0.01 (10 CG iterations, damping 1e-5, 15 line-search steps at 0.8), 500 meta-iterations. The expected
return of a policy is known in closed form here, which the exactness tests use (tests/test_rl_exactness.py).
Paper: the bandit experiments of pytorch-maml-rl have no published figure that we checked.

Run:      metajax train --config bandit_k5_maml_trpo   (--smoke: seconds)
Runtime:  on 2 CPU cores well under a second per meta-iteration (episodes of one step).
Measured: no result file yet.
"""

from .navigation2d_common import meta_rl_config


def get_config(smoke: bool = False):
    c = meta_rl_config("bandit", "maml", "trpo", 0.5, smoke, num_arms=5)
    c.env.horizon = 1  # one pull per episode
    c.model.hidden = (16,) if smoke else (32, 32)
    c.model.activation = "relu"
    c.data.num_trajectories = c.data.num_query_trajectories = 4 if smoke else 10
    c.returns.gamma = 0.95
    return c
