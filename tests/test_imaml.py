"""iMAML: implicit meta-gradients against a dense-Hessian solve, finite differences and unrolled MAML."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import mlp_loss, regression_tasks, tanh_mlp_init
from jax.flatten_util import ravel_pytree
from test_maml import directional_fd_check

import metajax as mj

pytestmark = pytest.mark.x64  # closed forms, finite differences and tight references: float64

LAM = 2.0
# enough inner steps for the proximal problem to converge to ~1e-15 (the
# implicit gradient is that of the solution, not of an unconverged iterate)
CONVERGED = dict(num_inner_steps=400, inner_lr=0.1, lam=LAM, cg_steps=60, cg_tol=1e-15)


def one_task(tasks, i=0):
    return jax.tree_util.tree_map(lambda a: a[i], tasks)


@pytest.fixture(scope="module")
def problem():
    params = tanh_mlp_init(jax.random.PRNGKey(0))
    tasks = regression_tasks(jax.random.PRNGKey(1), num_tasks=2)
    learner = mj.imaml(mlp_loss, "sgd", **CONVERGED)
    grad, metrics, _ = jax.jit(learner.meta_grad)(params, tasks)
    return params, tasks, learner, grad, metrics


def test_matches_dense_hessian_solve(problem):
    """Per task (I + H/lam)^-1 grad L_q(phi*), H the dense support Hessian at phi*; averaged over tasks."""
    params, tasks, learner, grad, _ = problem
    refs = []
    for i in range(2):
        task = one_task(tasks, i)
        phi = learner.adapt(params, task.support).params
        flat, unravel = ravel_pytree(phi)
        # phi really is the proximal stationary point
        stat = ravel_pytree(jax.grad(mlp_loss)(phi, task.support))[0] + LAM * (flat - ravel_pytree(params)[0])
        assert float(jnp.max(jnp.abs(stat))) < 1e-12
        hess = jax.hessian(lambda f, u=unravel, s=task.support: mlp_loss(u(f), s))(flat)
        gq = ravel_pytree(jax.grad(mlp_loss)(phi, task.query))[0]
        refs.append(np.linalg.solve(np.eye(flat.size) + np.asarray(hess) / LAM, np.asarray(gq)))
    np.testing.assert_allclose(ravel_pytree(grad)[0], np.mean(refs, axis=0), rtol=1e-10, atol=1e-13)


def test_matches_finite_differences_of_the_converged_objective(problem, key):
    params, tasks, learner, grad, _ = problem
    directional_fd_check(learner, params, tasks, grad, key, eps=1e-5, num_dirs=3, rtol=1e-7)


def test_coincides_with_exact_maml_through_the_converged_proximal_loop(problem):
    """Differentiating the unrolled proximal inner loop (exact MAML on it) converges to the implicit gradient."""
    params, tasks, learner, grad, _ = problem
    steps, lr = CONVERGED["num_inner_steps"], CONVERGED["inner_lr"]

    def unrolled(theta, task):
        def body(_, phi):
            g = jax.grad(mlp_loss)(phi, task.support)
            return jax.tree_util.tree_map(lambda p, gi, t: p - lr * (gi + LAM * (p - t)), phi, g, theta)

        return mlp_loss(jax.lax.fori_loop(0, steps, body, theta), task.query)

    ref = jax.grad(lambda th: jnp.mean(jax.vmap(lambda t: unrolled(th, t))(tasks)))(params)
    np.testing.assert_allclose(ravel_pytree(grad)[0], ravel_pytree(ref)[0], rtol=1e-9, atol=1e-12)


def test_head_only_and_minibatch_inner_loops(key):
    """ANIL-style mask: the frozen body's gradient goes through d phi*/d body (checked by finite differences)."""
    params = tanh_mlp_init(jax.random.PRNGKey(2))
    tasks = regression_tasks(jax.random.PRNGKey(3), num_tasks=2)
    learner = mj.imaml(mlp_loss, "sgd", head="^2/", **CONVERGED)
    grad, _, _ = jax.jit(learner.meta_grad)(params, tasks)
    assert float(jnp.linalg.norm(grad[0]["w"])) > 1e-6  # the body is meta-learned
    directional_fd_check(learner, params, tasks, grad, key, eps=1e-5, num_dirs=2, rtol=1e-7)
    # minibatch inner steps: runs, finite, and adapt reports per-step support losses
    mb = mj.imaml(mlp_loss, "momentum", 6, inner_lr=0.05, lam=LAM, inner_batch_size=2)
    g2, m2, _ = jax.jit(mb.meta_grad)(params, tasks)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves((g2, m2)))
    assert mb.adapt(params, one_task(tasks).support).losses.shape == (6,)


def test_adaptation_curve_records(problem):
    params, tasks, learner, _, _ = problem
    task = one_task(tasks)
    res = learner.adapt(params, task.support, num_steps=5, eval_fn=lambda p: mlp_loss(p, task.query))
    assert res.trace.shape == (6,)
    np.testing.assert_allclose(res.trace[0], mlp_loss(params, task.query), rtol=1e-12)
    np.testing.assert_allclose(res.losses[0], mlp_loss(params, task.support), rtol=1e-12)


def test_memory_is_flat_in_k_where_exact_grows():
    """XLA's buffer assignment: iMAML's temporaries do not grow with k, exact MAML's do."""
    params = tanh_mlp_init(jax.random.PRNGKey(0), sizes=(2, 64, 64, 1))
    tasks = regression_tasks(jax.random.PRNGKey(1), num_tasks=2, shots=50, query=50)

    def temp_bytes(learner):
        return jax.jit(learner.meta_grad).lower(params, tasks).compile().memory_analysis().temp_size_in_bytes

    imp = [temp_bytes(mj.imaml(mlp_loss, "sgd", k, inner_lr=0.1)) for k in (5, 50)]
    ex = [temp_bytes(mj.maml(mlp_loss, "sgd", k, inner_lr=0.1)) for k in (5, 50)]
    assert imp[1] <= 1.05 * imp[0], imp
    assert ex[1] > 3 * ex[0], ex


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lam=0.0), "lam must be > 0"),
        (dict(lam=float("nan")), "lam"),
        (dict(cg_steps=0), "cg_steps"),
        (dict(cg_tol=1.5), "cg_tol"),
        (dict(gradient="exact"), "imaml fixes gradient"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mj.imaml(mlp_loss, "sgd", 3, **kwargs)


def test_conv_net_with_custom_vjp_layers():
    """conv4's closed-form (custom-VJP, no forward mode) layers give the same implicit gradient as plain autodiff."""
    from metajax.models import conv4, cross_entropy_loss

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
    xs = jax.random.normal(k1, (2, 3, 16, 16, 1), jnp.float64)
    xq = jax.random.normal(k2, (2, 6, 16, 16, 1), jnp.float64)
    ys, yq = jnp.tile(jnp.arange(3), (2, 1)), jnp.tile(jnp.repeat(jnp.arange(3), 2), (2, 1))
    tasks = mj.Task((xs, ys), (xq, yq))
    grads = []
    for closed_form in (True, False):
        model = conv4(ways=3, filters=2, image_size=16, conv="lax_vjp", closed_form=closed_form)
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(k3))
        # task_chunk=1: XLA:CPU miscompiles float64 per-task lax.conv kernels under vmap (tests/test_models.py)
        learner = mj.imaml(
            cross_entropy_loss(model.apply), "sgd", 20, inner_lr=0.1, lam=LAM, has_aux=True, task_chunk=1
        )
        grads.append(jax.jit(learner.meta_grad)(params, tasks)[0])
    leaves = [jax.tree_util.tree_leaves(g) for g in grads]
    assert float(jnp.linalg.norm(ravel_pytree(grads[0])[0])) > 1e-6
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
