"""MAML-TRPO on CartPole with a task distribution over the cart mass, pole mass and pole length.

Source: the CartPole dynamics of gym / gymnax (CartPole-v1) with masses and half-length drawn uniformly from
(0.5, 2.0), (0.05, 0.5) and (0.25, 1.0); categorical 64-64 tanh policy, inner step 0.1, the MAML-TRPO settings of
configs/navigation2d_common.py, horizon 200.
Paper: no published figure for this task distribution that we checked.

Run:      metajax train --config cartpole_maml_trpo   (--smoke: seconds)
Runtime:  on 2 CPU cores several seconds per meta-iteration.
Measured: no result file yet.
"""

from .navigation2d_common import meta_rl_config


def get_config(smoke: bool = False):
    c = meta_rl_config("cartpole", "maml", "trpo", 0.1, smoke)
    if not smoke:
        c.env.horizon = 200
    return c
