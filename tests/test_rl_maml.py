"""MAML for RL: the learners' stateful loss equals the direct meta-loss, first order, MAML-TRPO end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import rl
from metajax._src.rl.estimators import outer_surrogate
from metajax._src.rl.rollout import trajectory_log_probs

LRS = (0.5,)


def bandit_meta(lrs=LRS, **kwargs):
    env, policy = rl.bernoulli_bandit(3), rl.categorical_mlp(3, (4,), "tanh")
    meta = rl.maml_rl(env, policy, len(lrs), inner_lr=lrs, num_trajectories=4, num_query_trajectories=3, **kwargs)
    params = policy.init(jax.random.PRNGKey(0), env.obs_dim)
    return meta, params, jnp.array([0.2, 0.5, 0.9])


def learner_style_loss(meta, params, task, key):
    """What metajax's stateful inner loop computes from ``loss_fn`` / ``query_loss_fn`` (k = fold_in(key, 2 t) at
    inner step t, fold_in(key, 2 t + 1) after the last), with the DiCE log-weight state left differentiable."""
    state, p = meta.init_state(), params
    for t, lr in enumerate(LRS):
        grads, (state, _) = jax.grad(meta.loss_fn, has_aux=True)(
            p, state, task, jnp.int32(t), jax.random.fold_in(key, 2 * t)
        )
        p = jax.tree_util.tree_map(lambda a, g, lr=lr: a - lr * g, p, grads)
    last = len(LRS) - 1
    loss, _ = meta.query_loss_fn(p, state, task, task, jnp.int32(last), jax.random.fold_in(key, 2 * last + 1))
    return loss


def test_stateful_loss_gives_the_direct_meta_gradient():
    no_baseline = rl.AdvantageSpec(baseline="none", normalize=False)  # the same function in both paths
    meta, params, task = bandit_meta(estimator="dice", advantages=no_baseline)
    key = jax.random.PRNGKey(3)

    @jax.jit
    def both(p):
        direct = jax.value_and_grad(lambda q: meta.meta_loss(q, task, key)[0])(p)
        return direct, jax.value_and_grad(lambda q: learner_style_loss(meta, q, task, key))(p)

    (v1, g1), (v2, g2) = both(params)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Without the differentiable state (state=None) the support term is gone: the REINFORCE estimator.
    assert jax.eval_shape(meta.loss_fn, params, None, task, jnp.int32(0), key)[1][0] is None


def test_a_metajax_learner_drives_the_loss():
    """``metajax.maml(..., stateful=True)`` with the RL losses gives the direct meta-gradient (same key).

    The learner's inner loop stops gradients through the model state, so through it ``"dice"`` loses its support
    term; ``"reinforce"`` (no state needed) matches exactly.
    """
    import metajax

    no_baseline = rl.AdvantageSpec(baseline="none", normalize=False)
    meta, params, task = bandit_meta((0.5, 0.5), estimator="reinforce", advantages=no_baseline)
    learner = metajax.maml(
        meta.loss_fn, "sgd", 2, inner_lr=0.5, stateful=True, has_aux=True, query_loss_fn=meta.query_loss_fn
    )
    key = jax.random.PRNGKey(2)
    context = metajax.MetaContext(jnp.int32(0), meta.init_state(), key)

    @jax.jit
    def both(p):
        grads, metrics, _ = learner.task_direction(learner.init(p), metajax.Task(task, task), context)
        return grads, jax.grad(lambda q: meta.meta_loss(q, task, key)[0])(p), metrics

    grads, direct, metrics = both(params)
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direct), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert "query_return" in metrics


def test_a_learner_with_a_differentiable_state_gives_the_exact_dice_meta_gradient():
    """``state_gradient=True`` keeps the DiCE log-weight's derivative across the learner's inner steps: the real
    ``metajax.maml`` learner then equals the direct (exact) meta-gradient; with the default (state cut) it does not."""
    import metajax

    no_baseline = rl.AdvantageSpec(baseline="none", normalize=False)
    meta, params, task = bandit_meta((0.5, 0.5), estimator="dice", advantages=no_baseline)
    key = jax.random.PRNGKey(2)
    context = metajax.MetaContext(jnp.int32(0), meta.init_state(), key)
    kw = {"inner_lr": 0.5, "stateful": True, "has_aux": True, "query_loss_fn": meta.query_loss_fn}
    exact = metajax.maml(meta.loss_fn, "sgd", 2, state_gradient=True, **kw)
    cut = metajax.maml(meta.loss_fn, "sgd", 2, **kw)

    @jax.jit
    def all_three(p):
        def direction(learner):
            return learner.task_direction(learner.init(p), metajax.Task(task, task), context)[0]

        return direction(exact), direction(cut), jax.grad(lambda q: meta.meta_loss(q, task, key)[0])(p)

    g_exact, g_cut, direct = all_three(params)
    flat = [jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(g)]) for g in (g_exact, g_cut, direct)]
    np.testing.assert_allclose(flat[0], flat[2], rtol=1e-4, atol=1e-6)
    assert float(jnp.max(jnp.abs(flat[1] - flat[2]))) > 1e-3  # without the state's derivative: the support term is lost


def test_first_order_is_the_query_gradient_at_the_adapted_parameters():
    meta, params, task = bandit_meta((0.5,), estimator="dice", gradient="first_order")
    key = jax.random.PRNGKey(4)

    @jax.jit
    def check(p):
        samples = meta.sample(p, task, key)
        grads = jax.grad(lambda q: meta.objective(q, task, samples)[0])(p)
        adapted, weight = meta.adapt(p, task, samples)
        adv = samples.query_advantages

        def query_loss(q):
            log_probs = trajectory_log_probs(meta.policy, q, samples.query)
            return -outer_surrogate("dice", log_probs, samples.query.rewards, samples.query.masks, adv, 0.99)

        return grads, jax.grad(query_loss)(adapted), weight

    grads, expected, weight = check(params)
    assert float(weight) == 0.0
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_maml_trpo_step_on_navigation():
    env, policy = rl.navigation2d(horizon=4), rl.gaussian_mlp(2, (8,))
    meta = rl.maml_rl(env, policy, inner_lr=0.5, num_trajectories=3, estimator="reinforce")
    params = policy.init(jax.random.PRNGKey(0), env.obs_dim)
    tasks = env.sample_tasks(jax.random.PRNGKey(1), 2)
    step = jax.jit(lambda p, k: rl.maml_trpo_step(meta, p, tasks, k, max_kl=0.01))
    new, metrics = step(params, jax.random.PRNGKey(2))
    info = metrics.trpo
    assert bool(info.accepted)
    assert float(info.kl_after) <= 0.01 and float(info.loss_after) < float(info.loss_before)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(new))
    assert any(
        float(jnp.abs(a - b).max()) > 0
        for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(params), strict=True)
    )
    # The evaluation protocol: the return before each inner step and after the last.
    returns = jax.jit(lambda p: meta.evaluate(p, tasks[0], jax.random.PRNGKey(5), (0.5, 0.25, 0.25)))(new)
    assert returns.shape == (4,) and bool(jnp.all(returns < 0))


@pytest.mark.slow
def test_meta_gradient_vmapped_over_tasks_equals_a_loop():
    meta, params, _ = bandit_meta(estimator="dice")
    tasks = meta.env.sample_tasks(jax.random.PRNGKey(1), 3)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    one = jax.jit(jax.grad(lambda p, t, k: meta.meta_loss(p, t, k)[0]))
    batched = jax.jit(jax.vmap(jax.grad(lambda p, t, k: meta.meta_loss(p, t, k)[0]), (None, 0, 0)))(params, tasks, keys)
    for i in range(3):
        looped = one(params, tasks[i], keys[i])
        for a, b in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(looped), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_maml_trpo_learns_navigation():
    """A few MAML-TRPO iterations on short 2D-navigation episodes raise the return after one inner step."""
    env, policy = rl.navigation2d(horizon=20), rl.gaussian_mlp(2, (32, 32))
    meta = rl.maml_rl(env, policy, inner_lr=0.5, num_trajectories=10, estimator="reinforce")
    params = policy.init(jax.random.PRNGKey(0), env.obs_dim)
    step = jax.jit(lambda p, ts, k: rl.maml_trpo_step(meta, p, ts, k))
    evaluate = jax.jit(jax.vmap(meta.evaluate, (None, 0, 0)))
    test_tasks, test_keys = env.sample_tasks(jax.random.PRNGKey(99), 10), jax.random.split(jax.random.PRNGKey(98), 10)
    before = evaluate(params, test_tasks, test_keys).mean(axis=0)
    for i in range(30):
        key = jax.random.PRNGKey(i + 1)
        params, _ = step(params, env.sample_tasks(jax.random.fold_in(key, 0), 10), jax.random.fold_in(key, 1))
    after = evaluate(params, test_tasks, test_keys).mean(axis=0)
    assert float(after[1]) > float(before[1]) + 2.0, (before, after)
    assert float(after[1] - after[0]) > float(before[1] - before[0])  # adaptation itself helps more
