"""Exact MAML meta-gradients against closed forms and finite differences (float64)."""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import mlp_loss, regression_tasks, tanh_mlp_init
from jax.test_util import check_grads

import metajax as mj

pytestmark = pytest.mark.x64  # closed forms, finite differences and tight references: float64


def quad_loss(w, batch):
    """0.5 * mean((X w - y)^2): gradient A w - b, Hessian A = X^T X / n."""
    x, y = batch
    return 0.5 * jnp.mean(jnp.square(x @ w - y))


def linreg_tasks(key, num_tasks=4, n_s=6, n_q=8, d=3):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    xs = jax.random.normal(k1, (num_tasks, n_s, d), jnp.float64)
    xq = jax.random.normal(k2, (num_tasks, n_q, d), jnp.float64)
    ys = jax.random.normal(k3, (num_tasks, n_s), jnp.float64)
    yq = jax.random.normal(k4, (num_tasks, n_q), jnp.float64)
    return mj.Task((xs, ys), (xq, yq))


def closed_form_linreg(w, tasks, alpha, k):
    """Mean over tasks of (I - alpha A_s)^k (A_q u_k - b_q), u_k = k SGD steps."""
    xs, ys = tasks.support
    xq, yq = tasks.query
    grads = []
    for t in range(xs.shape[0]):
        a_s = xs[t].T @ xs[t] / xs.shape[1]
        b_s = xs[t].T @ ys[t] / xs.shape[1]
        a_q = xq[t].T @ xq[t] / xq.shape[1]
        b_q = xq[t].T @ yq[t] / xq.shape[1]
        u = w
        for _ in range(k):
            u = u - alpha * (a_s @ u - b_s)
        jac = np.linalg.matrix_power(np.eye(w.shape[0]) - alpha * a_s, k)
        grads.append(jac.T @ (a_q @ u - b_q))
    return np.mean(grads, axis=0)


@pytest.mark.parametrize("k", [1, 3])
def test_exact_maml_matches_linear_regression_closed_form(key, k):
    tasks = linreg_tasks(key)
    w = jnp.array([0.3, -0.2, 0.5])
    alpha = 0.1
    grad, _, _ = mj.maml(quad_loss, "sgd", k, inner_lr=alpha).meta_grad(w, tasks)
    np.testing.assert_allclose(grad, closed_form_linreg(np.asarray(w), tasks, alpha, k), rtol=1e-12, atol=1e-14)


def test_one_d_closed_form_exact_fomaml_and_second_order_term():
    # Support f_s(w) = w^4/4 - c_s w, so grad = w^3 - c_s and hess = 3 w^2;
    # query uses the same family with c_q: grad_q(u) = u^3 - c_q.
    w, alpha = 0.7, 0.05
    tasks = mj.Task((jnp.array([[1.0], [-0.5], [2.0]]),), (jnp.array([[0.5], [0.3], [-1.0]]),))

    def loss(w, batch):
        (c,) = batch
        return jnp.mean(w**4 / 4 - c * w)

    exact, _, _ = mj.maml(loss, "sgd", 1, inner_lr=alpha).meta_grad(jnp.asarray(w), tasks)
    first, _, _ = mj.fomaml(loss, "sgd", 1, inner_lr=alpha).meta_grad(jnp.asarray(w), tasks)
    c_s = np.array([1.0, -0.5, 2.0])
    c_q = np.array([0.5, 0.3, -1.0])
    u = w - alpha * (w**3 - c_s)
    q_grad = u**3 - c_q
    closed_exact = np.mean((1 - alpha * 3 * w**2) * q_grad)
    closed_first = np.mean(q_grad)
    second_order = np.mean(-alpha * 3 * w**2 * q_grad)
    np.testing.assert_allclose(exact, closed_exact, rtol=1e-13)
    np.testing.assert_allclose(first, closed_first, rtol=1e-13)
    np.testing.assert_allclose(exact - first, second_order, rtol=1e-12)


def meta_objective(learner, meta_params, tasks):
    """F(theta): mean post-adaptation query loss, evaluated without derivatives."""

    def one(task):
        res = learner.adapt(meta_params, task.support)
        return learner.query_loss(res.params, task.query, task.support)[0]

    return jnp.mean(jax.vmap(one)(tasks))


def directional_fd_check(learner, meta_params, tasks, grad, key, eps=1e-5, num_dirs=3, rtol=1e-9, stencil=4):
    """Finite differences of F along random directions against <grad, v> (float64).

    ``stencil=4``: the fourth-order central difference (f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h, whose truncation
    error at h = 1e-5 is far below rounding for a smooth F (measured: 1e-13 to 5e-12 relative on the tanh-MLP
    MAML objectives, where the plain central difference is off by 1e-10 to 1e-8), so the check can be tight.
    Objectives with kinks (ReLU, max-pool) use it too, with h small enough that [-2h, 2h] crosses no kink (each
    caller says how far the nearest one is); its rounding error is about 1.5 ulp(F) / h of |grad| |v|.
    ``stencil=2``: the plain central difference (h^2 truncation), kept for comparison.
    """
    leaves, treedef = jax.tree_util.tree_flatten(meta_params)
    f = jax.jit(lambda mp: meta_objective(learner, mp, tasks))

    def at(v, t):
        return f(jax.tree_util.tree_map(lambda p, d: p + t * d, meta_params, v))

    for i in range(num_dirs):
        keys = jax.random.split(jax.random.fold_in(key, i), len(leaves))
        v = jax.tree_util.tree_unflatten(
            treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
        )
        if stencil == 4:
            fd = (8 * (at(v, eps) - at(v, -eps)) - (at(v, 2 * eps) - at(v, -2 * eps))) / (12 * eps)
        else:
            fd = (at(v, eps) - at(v, -eps)) / (2 * eps)
        an = sum(
            jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(v), strict=True)
        )
        # the error is measured against the directional derivative's scale |grad| |v| (its Cauchy-Schwarz bound),
        # so a direction nearly orthogonal to the gradient (a small <grad, v> left by cancellation) is not
        # held to a relative tolerance that its finite difference cannot meet
        scale = float(jnp.sqrt(sum(jnp.vdot(g, g) for g in jax.tree_util.tree_leaves(grad))))
        scale *= float(jnp.sqrt(sum(jnp.vdot(d, d) for d in jax.tree_util.tree_leaves(v))))
        if os.environ.get("METAJAX_PRINT_FD"):
            err, cos = abs(float(an - fd)) / scale, float(an) / scale
            print(f"FD error {err:.2e} of |grad| |v|; <grad, v> / (|grad| |v|) {cos:.1e}")
        np.testing.assert_allclose(an, fd, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("inner_opt", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("k", [1, 3])
def test_exact_maml_matches_finite_differences(key, inner_opt, k):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    learner = mj.maml(mlp_loss, inner_opt, k, inner_lr=0.05)
    grad, _, _ = jax.jit(learner.meta_grad)(params, tasks)
    directional_fd_check(learner, params, tasks, grad, key)


def test_exact_maml_check_grads(key):
    """jax.test_util.check_grads on the meta-objective itself (reverse mode, order 1)."""
    tasks = regression_tasks(key, num_tasks=2)
    params = tanh_mlp_init(jax.random.fold_in(key, 1), sizes=(2, 3, 1))
    learner = mj.maml(mlp_loss, "sgd", 2, inner_lr=0.1)
    check_grads(lambda p: meta_objective(learner, p, tasks), (params,), order=1, modes=["rev"])
    # and the meta-gradient is that reverse-mode gradient
    grad, _, _ = learner.meta_grad(params, tasks)
    ref = jax.grad(lambda p: meta_objective(learner, p, tasks))(params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), grad, ref)


def test_remat_gives_the_same_gradient(key):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    g1, _, _ = mj.maml(mlp_loss, "adam", 3, inner_lr=0.05).meta_grad(params, tasks)
    g2, _, _ = mj.maml(mlp_loss, "adam", 3, inner_lr=0.05, gradient=mj.Exact(remat=True)).meta_grad(params, tasks)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), g1, g2)
    # remat keeping the matrix products' outputs (the named strategy): the same gradient too
    g3, _, _ = mj.maml(mlp_loss, "adam", 3, inner_lr=0.05, gradient="exact_remat_dots").meta_grad(params, tasks)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), g1, g3)


def relu_net(params, x):
    h = jax.nn.relu(x @ params["w1"])
    return h @ params["w2"]


def test_adam_inner_loop_safe_eps_root_avoids_nan(key):
    """Exact MAML through Adam is NaN once an inner-gradient entry is exactly 0.

    Here hidden unit 0 is dead on every input (ReLU of a negative
    pre-activation), so its inner gradients are exactly zero. optax.adam's
    default eps_root=0 gives NaN meta-gradients; metajax's "adam" does not, and
    its meta-gradient matches finite differences.
    """
    w1 = jnp.array([[-1.0, 0.5, 0.3], [-1.0, -0.4, 0.8]])
    x = jnp.abs(jax.random.normal(key, (2, 6, 2), jnp.float64))  # positive inputs: unit 0 is dead
    y = jnp.sin(x[..., :1])
    tasks = mj.Task((x, y), (x + 0.1, jnp.sin(x[..., :1] + 0.1)))
    params = {"w1": w1, "w2": jnp.array([[0.2], [0.3], [-0.1]])}

    def loss(p, b):
        return jnp.mean(jnp.square(relu_net(p, b[0]) - b[1]))

    with pytest.warns(UserWarning, match="eps_root"):
        unsafe = mj.maml(loss, optax.adam(0.01), 2)
    g_unsafe, _, _ = unsafe.meta_grad(params, tasks)
    assert not all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(g_unsafe))
    safe = mj.maml(loss, "adam", 2, inner_lr=0.01)
    g_safe, _, _ = safe.meta_grad(params, tasks)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(g_safe))
    # Fourth-order stencil at h = 1e-4: no ReLU kink within 2h (the error still falls as h^4 up to h = 1e-3);
    # truncation ~1e-16 (1e-12 at h = 1e-3, times (h / 1e-3)^4), rounding ~1.5 ulp(F) / h = 4e-13 of |grad| |v|.
    directional_fd_check(safe, params, tasks, g_safe, key, eps=1e-4, rtol=1e-12)  # measured: 9e-14 (of |grad| |v|)


def test_maml_with_schedule_and_custom_optax_chain(key):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.sgd(optax.linear_schedule(0.1, 0.01, 3)))
    learner = mj.maml(mlp_loss, opt, 3)
    grad, _, _ = jax.jit(learner.meta_grad)(params, tasks)
    directional_fd_check(learner, params, tasks, grad, key)


def test_unsafe_inner_optimiser_probe():
    from metajax._src.inner import has_nan_derivative_at_zero_gradient

    assert has_nan_derivative_at_zero_gradient(optax.adam(0.1))
    assert not has_nan_derivative_at_zero_gradient(optax.adam(0.1, eps_root=1e-12))
    assert not has_nan_derivative_at_zero_gradient(mj.adam(0.1))
    assert not has_nan_derivative_at_zero_gradient(optax.sgd(0.1, momentum=0.9))
    # first-order mode does not differentiate the optimiser: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mj.fomaml(quad_loss, optax.adam(0.1), 1)
