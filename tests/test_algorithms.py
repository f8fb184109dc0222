"""FOMAML, Reptile, Meta-SGD and ANIL against their definitions (float64)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import mlp_loss, regression_tasks, tanh_mlp_apply, tanh_mlp_init
from test_maml import directional_fd_check

import metajax as mj


def allclose(a, b, rtol=1e-12, atol=1e-14):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def task_list(tasks):
    n = jax.tree_util.tree_leaves(tasks)[0].shape[0]
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], tasks) for i in range(n)]


@pytest.mark.x64
@pytest.mark.parametrize("inner_opt", ["sgd", "momentum", "adam"])
def test_fomaml_is_query_gradient_at_adapted_params(key, inner_opt):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    learner = mj.fomaml(mlp_loss, inner_opt, 3, inner_lr=0.05)
    grad, _, _ = learner.meta_grad(params, tasks)
    opt = mj.make_inner_opt(inner_opt, 0.05)
    per_task = []
    for task in task_list(tasks):
        adapted = mj.inner_loop(mlp_loss, opt, params, task.support, 3).params
        per_task.append(jax.grad(mlp_loss)(adapted, task.query))
    allclose(grad, jax.tree_util.tree_map(lambda *g: sum(g) / len(g), *per_task))


@pytest.mark.x64
def test_reptile_k1_equals_joint_training_gradient(key):
    """Reptile paper: with one inner step, (phi - phi~)/alpha = grad of the joint loss."""
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    alpha = 0.05
    direction, _, _ = mj.reptile(mlp_loss, "sgd", 1, inner_lr=alpha).meta_grad(params, tasks)

    def joint(p):
        return jnp.mean(jax.vmap(lambda t: mlp_loss(p, t.support))(tasks))

    allclose(jax.tree_util.tree_map(lambda d: d / alpha, direction), jax.grad(joint)(params), rtol=1e-10)


def test_reptile_without_query_scoring_has_the_same_direction(key):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    d1, m1, _ = mj.reptile(mlp_loss, "sgd", 3, inner_lr=0.05).meta_grad(params, tasks)
    d2, m2, _ = mj.reptile(mlp_loss, "sgd", 3, inner_lr=0.05, score_query=False).meta_grad(params, tasks)
    allclose(d1, d2, rtol=0)
    assert set(m2) == {"support_loss"} and "query_loss" in m1
    allclose(m1["support_loss"], m2["support_loss"], rtol=0)
    with pytest.raises(TypeError, match="score_query must be a bool"):
        mj.reptile(mlp_loss, "sgd", 3, score_query=1)


@pytest.mark.x64
def test_batched_reptile_is_mean_of_serial_updates_from_same_start(key):
    tasks = regression_tasks(key, num_tasks=4)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    learner = mj.reptile(mlp_loss, "adam", 4, inner_lr=0.05)
    eps = 0.5
    ms = mj.make_meta_step(learner, optax.sgd(eps))
    new, _, _ = ms.step(params, ms.init(params), tasks)
    adapted = [mj.inner_loop(mlp_loss, mj.adam(0.05), params, t.support, 4).params for t in task_list(tasks)]
    mean_adapted = jax.tree_util.tree_map(lambda *a: sum(a) / len(a), *adapted)
    expect = jax.tree_util.tree_map(lambda p, m: p + eps * (m - p), params, mean_adapted)
    allclose(new, expect)
    # serial Reptile (a meta-batch of one task): phi moves towards that task's phi~
    first = task_list(tasks)[0]
    phi1 = mj.inner_loop(mlp_loss, mj.adam(0.05), params, first.support, 4).params
    p1, _, _ = ms.step(params, ms.init(params), jax.tree_util.tree_map(lambda x: x[None], first))
    allclose(p1, jax.tree_util.tree_map(lambda a, b: a + eps * (b - a), params, phi1))


@pytest.mark.parametrize("granularity", ["parameter", "tensor", "scalar"])
def test_meta_sgd_with_frozen_rates_is_maml(key, granularity):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    alpha = 0.07
    learner = mj.meta_sgd(mlp_loss, "sgd", 2, inner_lr=alpha, granularity=granularity)
    mp = learner.init(params)
    grad, metrics, _ = learner.meta_grad(mp, tasks)
    ref, ref_metrics, _ = mj.maml(mlp_loss, "sgd", 2, inner_lr=alpha).meta_grad(params, tasks)
    allclose(grad.params, ref)
    allclose(metrics, ref_metrics)
    assert jax.tree_util.tree_structure(grad.lrs) == jax.tree_util.tree_structure(mp.lrs)


@pytest.mark.x64
@pytest.mark.parametrize("granularity", ["parameter", "scalar"])
def test_meta_sgd_rate_gradient_matches_finite_differences(key, granularity):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    learner = mj.meta_sgd(mlp_loss, "sgd", 2, inner_lr=0.05, granularity=granularity)
    mp = learner.init(params)
    grad, _, _ = jax.jit(learner.meta_grad)(mp, tasks)
    directional_fd_check(learner, mp, tasks, grad, key)
    # the rate gradient alone, along the all-ones direction in rate space
    lr_only = lambda lrs: mj.MetaSGDParams(params, lrs)  # noqa: E731
    f = lambda lrs: _objective(learner, lr_only(lrs), tasks)  # noqa: E731
    v = jax.tree_util.tree_map(lambda x: jnp.ones_like(x), mp.lrs)
    h = 1e-5

    def at(t):
        return f(jax.tree_util.tree_map(lambda a, d: a + t * d, mp.lrs, v))

    # fourth-order central difference: its truncation error at h = 1e-5 is below float64 rounding here
    fd = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
    an = sum(
        jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grad.lrs), jax.tree_util.tree_leaves(v), strict=True)
    )
    if os.environ.get("METAJAX_PRINT_FD"):
        print(f"Meta-SGD rate FD relative error {abs(float(an - fd) / float(an)):.2e}")
    np.testing.assert_allclose(an, fd, rtol=1e-9)


def _objective(learner, mp, tasks):
    def one(task):
        res = learner.adapt(mp, task.support)
        return learner.query_loss(res.params, task.query, task.support)[0]

    return jnp.mean(jax.vmap(one)(tasks))


@pytest.mark.x64
@pytest.mark.parametrize("gradient", ["exact", "first_order"])
def test_anil_is_maml_with_body_frozen_in_inner_loop(key, gradient):
    """Hand-written: only the last layer takes inner SGD steps; gradients reach all layers."""
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    alpha, k = 0.1, 2
    learner = mj.anil(mlp_loss, head="^2/", inner_opt="sgd", num_inner_steps=k, inner_lr=alpha, gradient=gradient)
    grad, _, _ = learner.meta_grad(learner.init(params), tasks)

    def objective(p, task):
        body, head = p[:2], p[2]
        for _ in range(k):
            g = jax.grad(lambda h: mlp_loss(body + [h], task.support))(head)
            if gradient == "first_order":
                g = jax.lax.stop_gradient(g)
            head = jax.tree_util.tree_map(lambda h, gg: h - alpha * gg, head, g)
        return mlp_loss(body + [head], task.query)

    ref = jax.tree_util.tree_map(
        lambda *g: sum(g) / len(g), *[jax.grad(objective)(params, t) for t in task_list(tasks)]
    )
    allclose(grad, ref)
    # the body does receive a meta-gradient
    assert float(jnp.abs(grad[0]["w"]).sum()) > 0


def test_anil_flax_head_selector():
    from metajax.models import conv4

    model = conv4(ways=3, filters=2, image_size=16)
    params = model.init(jax.random.PRNGKey(0))
    mask = mj.select_mask(params, "head")
    from metajax._src.inner import path_str

    picked = [path_str(p) for p, m in jax.tree_util.tree_flatten_with_path(mask)[0] if m]
    assert picked == ["params/head/bias", "params/head/kernel"]


def test_tanh_helper_shapes(key):
    p = tanh_mlp_init(key)
    assert tanh_mlp_apply(p, jnp.zeros((4, 2))).shape == (4, 1)


@pytest.mark.x64
def test_inner_minibatches_cycle_through_the_support_batch(key):
    """Step t uses examples t*b .. t*b+b-1 (mod n): checked against hand-written SGD."""
    tasks = regression_tasks(key, shots=6)
    params = tanh_mlp_init(jax.random.fold_in(key, 1))
    alpha, b, k = 0.1, 4, 3
    learner = mj.reptile(mlp_loss, "sgd", k, inner_lr=alpha, inner_batch_size=b)
    task = task_list(tasks)[0]
    p = params
    for t in range(k):
        idx = [(t * b + i) % 6 for i in range(b)]
        g = jax.grad(mlp_loss)(p, jax.tree_util.tree_map(lambda x, idx=idx: x[jnp.array(idx)], task.support))
        p = jax.tree_util.tree_map(lambda w, gw: w - alpha * gw, p, g)
    allclose(learner.adapt(params, task.support).params, p)
    # evaluation can override the training minibatching (None = full batch)
    full = learner.adapt(params, task.support, batch_size=None).params
    allclose(full, mj.inner_loop(mlp_loss, optax.sgd(alpha), params, task.support, k).params)
    with pytest.raises(ValueError, match="inner_batch_size must be an integer >= 1"):
        mj.maml(mlp_loss, "sgd", 1, inner_batch_size=0)
