"""The exact meta-gradient of MAML for RL, checked against enumeration on a Bernoulli bandit (float64).

On a K-armed bandit with one-step episodes every support batch can be enumerated, so the expected
post-adaptation return F(theta) = E_{S ~ pi_theta}[J(theta + alpha g(S))] is an exact, differentiable function and
its autodiff gradient is the true meta-gradient. The DiCE estimator's mean over many sampled batches must match it
within 3 standard errors; the plain REINFORCE surrogate differentiated twice (the MAML paper's code) must not.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from metajax import rl
from metajax._src.rl.rollout import Trajectories

NUM_ARMS, NUM_SUPPORT, NUM_QUERY, ALPHA, NUM_BATCHES = 3, 3, 2, 1.0, 20000


def _setup():
    env = rl.bernoulli_bandit(NUM_ARMS)
    policy = rl.categorical_mlp(NUM_ARMS, ())
    params = {"head": {"w": jnp.zeros((1, NUM_ARMS)), "b": jnp.array([0.3, -0.2, 0.0])}}
    task = jnp.array([0.2, 0.5, 0.9])
    # The references' inner advantages (refitted linear baseline, normalised): any function of the support batch
    # is part of the inner update rule and keeps the estimate exact. The query baseline must not depend on the
    # trajectory it is applied to, hence none.
    metas = {
        name: rl.maml_rl(
            env,
            policy,
            inner_lr=ALPHA,
            estimator=name,
            num_trajectories=NUM_SUPPORT,
            num_query_trajectories=NUM_QUERY,
            advantages=rl.AdvantageSpec(gamma=0.95, baseline="linear", normalize=True),
            query_advantages=rl.AdvantageSpec(gamma=0.95, baseline="none", normalize=False),
        )
        for name in ("dice", "reinforce")
    }
    return params, task, metas


def _true_meta_gradient(params, task, meta):
    """Autodiff of sum_S P_theta(S) J(adapt(theta, S)) over every support batch S of (arm, reward) pairs."""
    outcomes = list(itertools.product(range(NUM_ARMS), (0.0, 1.0)))
    combos = list(itertools.product(outcomes, repeat=NUM_SUPPORT))
    actions = np.array([[a for a, _ in c] for c in combos], np.int32)
    rewards = np.array([[r for _, r in c] for c in combos])
    n = len(combos)
    support = Trajectories(  # leading axes: support batch, inner step, trajectory, time
        observations=np.zeros((n, 1, NUM_SUPPORT, 1, 1)),
        actions=actions[:, None, :, None],
        rewards=rewards[:, None, :, None],
        masks=np.ones((n, 1, NUM_SUPPORT, 1)),
        log_probs=np.zeros((n, 1, NUM_SUPPORT, 1)),
    )

    def expected_post_adaptation_return(p):
        advantages = jax.vmap(jax.vmap(meta.support_advantages))(support)  # per support batch and inner step
        probs = jax.nn.softmax(p["head"]["b"])
        likelihood = jnp.prod(probs[actions] * jnp.where(rewards > 0, task[actions], 1 - task[actions]), axis=1)
        adapted, _ = jax.vmap(meta.adapt, (None, None, 0))(p, task, rl.MetaRLSamples(support, advantages))
        returns = jax.vmap(lambda q: jnp.sum(jax.nn.softmax(q["head"]["b"]) * task))(adapted)
        return jnp.sum(likelihood * returns), jnp.sum(likelihood)

    grads, total = jax.jit(jax.grad(expected_post_adaptation_return, has_aux=True))(params)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)  # the enumeration covers every support batch
    return np.asarray(grads["head"]["b"])


def test_dice_is_unbiased_and_reinforce_is_not():
    with jax.enable_x64(True):
        params, task, metas = _setup()
        truth = _true_meta_gradient(params, task, metas["dice"])

        def estimates(key):
            # The estimators draw the same trajectories (their inner surrogates have the same gradient).
            samples = metas["dice"].sample(params, task, key)

            def grad(meta, baseline=0.0):
                loss = lambda p: meta.objective(p, task, samples, baseline)[0]  # noqa: E731
                return -jax.grad(loss)(params)["head"]["b"]

            return grad(metas["dice"]), grad(metas["reinforce"]), grad(metas["dice"], 0.5)

        keys = jax.random.split(jax.random.PRNGKey(0), NUM_BATCHES)
        # lax.map, not vmap: one batch's program compiled once (vmapping random draws compiles slowly on CPU).
        dice, reinforce, dice_baseline = (np.asarray(g) for g in jax.jit(lambda ks: jax.lax.map(estimates, ks))(keys))

    def mean_se(g):
        return g.mean(axis=0), g.std(axis=0, ddof=1) / np.sqrt(len(g))

    dice_mean, dice_se = mean_se(dice)
    reinforce_mean, reinforce_se = mean_se(reinforce)
    # (a) the exact estimator: within 3 standard errors of the true meta-gradient in every coordinate.
    assert np.all(np.abs(dice_mean - truth) <= 3 * dice_se), (truth, dice_mean, dice_se)
    # (b) REINFORCE differentiated twice misses the support term: many standard errors away.
    z = np.abs(reinforce_mean - truth) / reinforce_se
    assert np.max(z) > 6, (truth, reinforce_mean, reinforce_se)
    # A support baseline independent of the samples keeps DiCE unbiased and lowers its variance.
    baseline_mean, baseline_se = mean_se(dice_baseline)
    assert np.all(np.abs(baseline_mean - truth) <= 3 * baseline_se) and np.all(baseline_se < dice_se)
    # The bias is the support term, which the paired difference of the two estimators measures directly.
    diff_mean, diff_se = mean_se(dice - reinforce)
    assert np.all(np.abs(diff_mean - (truth - reinforce_mean)) <= 3 * np.hypot(diff_se, reinforce_se))
