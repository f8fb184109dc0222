"""TRPO: conjugate gradient, the KL-constrained step and the line search, on problems with known answers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import rl

SIGMA = 0.5


def gaussian_kl(mean):
    """KL from N(0, SIGMA^2 I) to N(mean, SIGMA^2 I), a Gaussian policy whose mean moved; Fisher I / SIGMA^2."""
    return jnp.sum(jnp.square(mean)) / (2 * SIGMA**2)


def test_conjugate_gradient_solves_an_spd_system():
    a = jax.random.normal(jax.random.PRNGKey(0), (5, 5))
    a = a @ a.T + 5 * jnp.eye(5)
    b = jnp.arange(1.0, 6.0)
    x, residual = rl.conjugate_gradient(lambda v: a @ v, b, iters=5)  # exact in n steps (up to rounding)
    np.testing.assert_allclose(x, jnp.linalg.solve(a, b), rtol=1e-4)
    assert float(residual) < 1e-6


def test_trpo_step_reaches_the_trust_region_boundary():
    target = jnp.array([1.0, -2.0, 0.5])
    loss = lambda m: jnp.sum(jnp.square(m - target))  # noqa: E731
    new, info = jax.jit(lambda m: rl.trpo_step(m, loss, gaussian_kl, max_kl=0.01))(jnp.zeros(3))
    assert bool(info.accepted) and int(info.backtracks) == 0
    # The natural-gradient step along the target direction, scaled so that KL = max_kl (the damping shortens it
    # by a factor 1 + 1e-5 / (1 / SIGMA^2)).
    np.testing.assert_allclose(gaussian_kl(new), 0.01, rtol=1e-4)
    np.testing.assert_allclose(new / jnp.linalg.norm(new), target / jnp.linalg.norm(target), rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(new), math.sqrt(2 * 0.01) * SIGMA, rtol=1e-4)
    assert float(info.loss_after) < float(info.loss_before)
    np.testing.assert_allclose(info.loss_after, loss(new), rtol=1e-6)
    np.testing.assert_allclose(info.kl_after, gaussian_kl(new), rtol=1e-6)


def test_trpo_line_search_backtracks_and_refuses():
    direction = jnp.array([1.0, 0.0])

    def loss(m):  # improves along `direction` only for steps shorter than 0.1: -s + 1000 s^4 < 0
        s = jnp.vdot(m, direction)
        return -s + 1000.0 * s**4 + jnp.sum(jnp.square(m)) - s**2

    unit_kl = lambda p: 0.5 * jnp.sum(jnp.square(p))  # noqa: E731
    step = jax.jit(lambda m, g: rl.trpo_step(m, loss, unit_kl, max_kl=0.01, grad=g))
    # Full step length sqrt(2 * 0.01) = 0.141: 0.8^2 * 0.141 = 0.090 < 0.1 is the first accepted point.
    new, info = step(jnp.zeros(2), None)
    assert bool(info.accepted) and int(info.backtracks) == 2
    np.testing.assert_allclose(new, [0.64 * math.sqrt(0.02), 0.0], rtol=1e-4)
    # A given gradient pointing uphill: nothing is accepted and the parameters stay where they are.
    new, info = step(jnp.zeros(2), -jax.grad(loss)(jnp.zeros(2)))
    assert not bool(info.accepted) and int(info.backtracks) == 15
    np.testing.assert_array_equal(new, jnp.zeros(2))
    assert float(info.kl_after) == 0.0 and float(info.loss_after) == float(info.loss_before)


def test_trpo_errors():
    with pytest.raises(ValueError, match=r"max_kl must be > 0 \(the trust region's KL bound\), got -0.01"):
        rl.trpo_step(jnp.zeros(2), jnp.sum, gaussian_kl, max_kl=-0.01)
    with pytest.raises(ValueError, match="ls_backtrack_ratio must be in"):
        rl.trpo_step(jnp.zeros(2), jnp.sum, gaussian_kl, ls_backtrack_ratio=1.5)
    with pytest.raises(ValueError, match="cg_iters must be an integer >= 1, got 0"):
        rl.trpo_step(jnp.zeros(2), jnp.sum, gaussian_kl, cg_iters=0)
    env, policy = rl.bernoulli_bandit(3), rl.categorical_mlp(3, ())
    meta = rl.maml_rl(env, policy, num_trajectories=2)
    params = policy.init(jax.random.PRNGKey(0), 1)
    with pytest.raises(ValueError, match="max_kl must be > 0"):
        rl.maml_trpo_step(meta, params, env.sample_tasks(jax.random.PRNGKey(0), 2), jax.random.PRNGKey(1), max_kl=-1.0)
    with pytest.raises(ValueError, match="tasks must be a batch of bernoulli_bandit-3 tasks"):
        rl.maml_trpo_step(meta, params, jnp.zeros(3), jax.random.PRNGKey(1))


def _gn_problem(env_name, steps, estimator):
    if env_name == "bandit":
        env, policy = rl.bernoulli_bandit(3), rl.categorical_mlp(3, (4,))
    else:
        env, policy = rl.navigation2d(horizon=5), rl.gaussian_mlp(2, (8,))
    meta = rl.maml_rl(env, policy, steps, inner_lr=0.3, num_trajectories=3, estimator=estimator)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), policy.init(jax.random.PRNGKey(0), env.obs_dim))
    return meta, params, env.sample_tasks(jax.random.PRNGKey(1), 2)


def _flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(tree)])


GN_CASES = [("navigation2d", 2, "dice"), ("bandit", 1, "reinforce")]


@pytest.mark.x64
@pytest.mark.parametrize(("env_name", "steps", "estimator"), GN_CASES)
def test_gauss_newton_kl_product_is_the_kl_hessian(env_name, steps, estimator):
    """At the current parameters the adapted policies' KL has zero gradient, so its Hessian is the Gauss-Newton
    matrix J^T G^T M G J: the factored product equals forward-over-reverse on the whole KL (measured: ~1e-15
    relative in float64)."""
    meta, params, tasks = _gn_problem(env_name, steps, estimator)
    samples = jax.jit(jax.vmap(meta.sample, (None, 0, 0)))(params, tasks, jax.random.split(jax.random.PRNGKey(2), 2))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
    v = treedef.unflatten([jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)])

    def products(v):
        old, hvp = rl.gauss_newton_kl_hvp(meta, params, tasks, samples)

        def kl(p):
            return jnp.mean(jax.vmap(meta.kl, (None, 0, 0, 0))(p, old, tasks, samples))

        return hvp(v), jax.jvp(jax.grad(kl), (params,), (v,))[1]

    got, want = map(_flat, jax.jit(products)(v))
    assert float(jnp.linalg.norm(want)) > 1e-3  # the adaptation moves the query distributions
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * float(jnp.abs(want).max()))
    with pytest.raises(ValueError, match="kl_hvp must be one of"):
        rl.maml_trpo_step(meta, params, tasks, jax.random.PRNGKey(2), kl_hvp="fisher")


@pytest.mark.x64
@pytest.mark.slow  # two MAML-TRPO steps compiled per case
@pytest.mark.parametrize(("env_name", "steps", "estimator"), GN_CASES)
def test_gauss_newton_and_forward_over_reverse_give_the_same_trpo_step(env_name, steps, estimator):
    meta, params, tasks = _gn_problem(env_name, steps, estimator)

    def step(how):
        # 3 CG iterations: this tiny batch (30 query steps, 44 parameters) makes the damped KL Hessian nearly
        # singular, and conjugate gradient amplifies rounding there: after 10 iterations the two products' 1e-15
        # differences have grown to 1e-3 in the step (residuals 0.023 and 0.72), as any two roundings would.
        fn = jax.jit(lambda p, t, k: rl.maml_trpo_step(meta, p, t, k, kl_hvp=how, cg_iters=3))
        return fn(params, tasks, jax.random.PRNGKey(2))

    (a, ia), (b, ib) = step("gauss_newton"), step("forward_over_reverse")
    assert bool(ia.trpo.accepted) and bool(ia.trpo.backtracks == ib.trpo.backtracks)
    np.testing.assert_allclose(_flat(a), _flat(b), rtol=1e-9, atol=1e-12)
