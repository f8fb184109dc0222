"""vmap = loop over tasks, jit = no jit, chunked = vmapped, no retracing."""

import chex
import jax
import numpy as np
import optax
import pytest
from conftest import mlp_loss, regression_tasks, tanh_mlp_init

import metajax as mj

LEARNERS = {
    "maml": lambda **kw: mj.maml(mlp_loss, "momentum", 2, inner_lr=0.05, **kw),
    "fomaml": lambda **kw: mj.fomaml(mlp_loss, "sgd", 2, inner_lr=0.05, **kw),
    "reptile": lambda **kw: mj.reptile(mlp_loss, "sgd", 2, inner_lr=0.05, **kw),
    "meta_sgd": lambda **kw: mj.meta_sgd(mlp_loss, "sgd", 1, inner_lr=0.05, **kw),
    "anil": lambda **kw: mj.anil(mlp_loss, "sgd", 2, head="^2/", inner_lr=0.05, **kw),
}


def allclose(a, b, rtol=1e-12, atol=1e-14):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.mark.x64
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_vmap_equals_loop_and_chunks(key, name):
    tasks = regression_tasks(key, num_tasks=4)
    learner = LEARNERS[name]()
    mp = learner.init(tanh_mlp_init(jax.random.fold_in(key, 1)))
    batched, metrics, _ = learner.meta_grad(mp, tasks)
    outs = [learner.task_direction(mp, jax.tree_util.tree_map(lambda x, i=i: x[i], tasks)) for i in range(4)]
    allclose(batched, jax.tree_util.tree_map(lambda *g: sum(g) / 4, *[o[0] for o in outs]))
    allclose(metrics, jax.tree_util.tree_map(lambda *g: sum(g) / 4, *[o[1] for o in outs]))
    chunked, _, _ = LEARNERS[name](task_chunk=3).meta_grad(mp, tasks)  # 4 tasks in chunks of 3: remainder path
    allclose(batched, chunked)


@pytest.mark.x64
@pytest.mark.parametrize("name", ["maml", "reptile"])
def test_meta_step_jit_equals_no_jit(key, name):
    tasks = regression_tasks(key)
    learner = LEARNERS[name]()
    params = tanh_mlp_init(key)
    ms = mj.make_meta_step(learner, optax.adam(1e-2))
    with jax.disable_jit():
        ref = ms.step(params, ms.init(params), tasks)
    out = jax.jit(ms.step)(params, ms.init(params), tasks)
    allclose(out, ref, rtol=1e-10)


def test_meta_step_traces_once_over_many_steps(key):
    learner = LEARNERS["meta_sgd"]()
    mp = learner.init(tanh_mlp_init(key))
    ms = mj.make_meta_step(learner, optax.adam(1e-2))
    step = jax.jit(chex.assert_max_traces(ms.step, n=1), donate_argnums=(0, 1))
    state = ms.init(mp)
    losses = []
    for i in range(6):
        mp, state, metrics = step(mp, state, regression_tasks(jax.random.fold_in(key, i)))
        losses.append(float(metrics["query_loss"]))
    assert int(state.step) == 6
    assert all(np.isfinite(losses))


@pytest.mark.x64
def test_train_loop_matches_repeated_steps(key):
    from metajax._src.data import sinusoid
    from metajax.models import mlp, mse_loss

    model = mlp(hidden=(8,))
    learner = mj.maml(mse_loss(model.apply), "sgd", 1, inner_lr=0.01)
    ms = mj.make_meta_step(learner, optax.adam(1e-3))
    params = jax.tree_util.tree_map(lambda x: x.astype("float64"), model.init(key))
    sample = lambda k: sinusoid.sample_tasks(k, 3, shots=4)  # noqa: E731
    run = jax.jit(mj.make_train_loop(ms, sample, 2))
    p1, s1, m1 = run(params, ms.init(params), key)
    p1, s1, m2 = run(p1, s1, key)
    p2, s2 = params, ms.init(params)
    step = jax.jit(ms.step)
    for i in range(4):
        p2, s2, _ = step(p2, s2, sample(jax.random.fold_in(key, i)))
    allclose(p1, p2, rtol=1e-10)
    assert m1["query_loss"].shape == (2,)


def test_skip_nonfinite_keeps_params_and_counts(key):
    import jax.numpy as jnp

    tasks = regression_tasks(key)
    params = tanh_mlp_init(key)
    learner = LEARNERS["maml"]()
    ms = mj.make_meta_step(learner, optax.adam(1e-2), skip_nonfinite=True)
    bad = mj.Task(tasks.support, (tasks.query[0], tasks.query[1].at[0, 0, 0].set(jnp.nan)))
    new, state, metrics = jax.jit(ms.step)(params, ms.init(params), bad)
    allclose(new, params, rtol=0, atol=0)
    assert int(metrics["skipped"]) == 1 and int(state.step) == 1
    new, state, metrics = jax.jit(ms.step)(params, ms.init(params), tasks)
    assert int(metrics["skipped"]) == 0
    assert not np.allclose(new[0]["w"], params[0]["w"])
