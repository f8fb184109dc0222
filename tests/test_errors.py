"""Bad input raises a ValueError naming the argument, before anything is compiled."""

import jax
import jax.numpy as jnp
import optax
import pytest
from conftest import regression_tasks, tanh_mlp_apply, tanh_mlp_init

import metajax as mj
from metajax._src.data import sinusoid

CALLS = {"n": 0}


def counting_loss(params, batch):
    CALLS["n"] += 1  # runs at trace time only: counts traces of the model
    x, y = batch
    return jnp.mean(jnp.square(tanh_mlp_apply(params, x) - y))


@pytest.fixture(autouse=True)
def reset():
    CALLS["n"] = 0


def step_of(learner):
    ms = mj.make_meta_step(learner, optax.sgd(0.1))
    return ms, jax.jit(ms.step)


def test_mismatched_support_query_shapes(key):
    tasks = regression_tasks(key)
    xq, yq = tasks.query
    bad = mj.Task(tasks.support, (jnp.concatenate([xq, xq], axis=-1), yq))
    learner = mj.maml(counting_loss, "sgd", 1)
    ms, step = step_of(learner)
    params = tanh_mlp_init(key)
    with pytest.raises(ValueError, match=r"tasks: support\[0\] has per-example shape \(2,\) but query\[0\] has \(4,\)"):
        step(params, ms.init(params), bad)
    assert CALLS["n"] == 0


@pytest.mark.parametrize("k", [0, -2, 1.5, True])
def test_bad_num_inner_steps(k):
    with pytest.raises(ValueError, match="num_inner_steps must be an integer >= 1"):
        mj.maml(counting_loss, "sgd", k)
    with pytest.raises(ValueError, match="num_inner_steps"):
        mj.reptile(counting_loss, "sgd", k)
    with pytest.raises(ValueError, match="num_inner_steps"):
        mj.meta_sgd(counting_loss, "sgd", k)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="inner_lr must be"):
        mj.maml(counting_loss, "sgd", 1, inner_lr=lr)
    with pytest.raises(ValueError, match="inner_lr must be"):
        mj.meta_sgd(counting_loss, "sgd", 1, inner_lr=lr)


def test_task_batch_without_task_axis_detected_structurally(key):
    tasks = regression_tasks(key, shots=5, query=7)
    single = jax.tree_util.tree_map(lambda x: x[0], tasks)  # (5, 2) support, (7, 2) query
    learner = mj.maml(counting_loss, "sgd", 1)
    ms, step = step_of(learner)
    params = tanh_mlp_init(key)
    with pytest.raises(ValueError, match="leading task axis.*Is the task axis missing"):
        step(params, ms.init(params), single)
    assert CALLS["n"] == 0


def test_task_batch_without_task_axis_detected_with_task_spec(key):
    # shots == query shots: only the declared per-task shapes can tell
    learner = mj.maml(counting_loss, "sgd", 1, task_spec=sinusoid.task_spec(5))
    tasks = sinusoid.sample_tasks(key, 3, shots=5)
    single = jax.tree_util.tree_map(lambda x: x[0], tasks)
    ms, step = step_of(learner)
    params = tanh_mlp_init(key, sizes=(1, 4, 1))
    with pytest.raises(ValueError, match="task batch needs a leading task axis"):
        step(params, ms.init(params), single)
    assert CALLS["n"] == 0
    step(params, ms.init(params), tasks)  # the right shapes pass
    assert CALLS["n"] > 0


def test_tasks_must_be_a_task(key):
    learner = mj.maml(counting_loss, "sgd", 1)
    with pytest.raises(ValueError, match=r"tasks must be a metajax.Task\(support, query\), got tuple"):
        learner.meta_grad(tanh_mlp_init(key), ((1, 2), (3, 4)))


def test_anil_head_matching_nothing(key):
    learner = mj.anil(counting_loss, head="^head/", inner_opt="sgd", num_inner_steps=1)
    params = tanh_mlp_init(key)
    with pytest.raises(ValueError, match=r"head='\^head/' matches no parameter; expected at least one of the paths"):
        learner.init(params)
    ms, step = step_of(learner)
    with pytest.raises(ValueError, match="head="):
        step(params, ms.init(params), regression_tasks(key))
    assert CALLS["n"] == 0


def test_unknown_inner_optimiser_and_gradient():
    with pytest.raises(ValueError, match="inner_opt must be one of"):
        mj.maml(counting_loss, "rmsprop", 1)
    with pytest.raises(ValueError, match="gradient must be one of"):
        mj.maml(counting_loss, "sgd", 1, gradient="second")
    with pytest.raises(ValueError, match="granularity must be one of"):
        mj.meta_sgd(counting_loss, "sgd", 1, granularity="layer")
    with pytest.raises(ValueError, match="task_chunk must be an integer >= 1"):
        mj.maml(counting_loss, "sgd", 1, task_chunk=0)
    with pytest.raises(ValueError, match="outer_opt must be an optax.GradientTransformation"):
        mj.make_meta_step(mj.maml(counting_loss), "adam")


def test_task_values_nan_and_label_range(key):
    tasks = regression_tasks(key)
    mj.check_task_values(tasks)
    bad = mj.Task(tasks.support, (tasks.query[0].at[0, 1, 0].set(jnp.nan), tasks.query[1]))
    with pytest.raises(ValueError, match=r"tasks\[query/0\] has 1 non-finite values .*must be finite"):
        mj.check_task_values(bad)
    labels = jnp.array([[0, 1, 2, 5]])
    x = jnp.zeros((1, 4, 3))
    with pytest.raises(ValueError, match=r"holds labels from 0 to 5; expected labels in \[0, 5\) for 5-way tasks"):
        mj.check_task_values(mj.Task((x, labels), (x, labels)), num_classes=5)
    mj.check_task_values(mj.Task((x, labels), (x, labels)), num_classes=6)


def test_task_chunk_strategy_resolution():
    from metajax._src.learner import resolve_task_chunk

    assert resolve_task_chunk("auto", backend="cpu") == 1
    assert resolve_task_chunk("auto", backend="gpu") is None
    assert resolve_task_chunk("vmap") is None and resolve_task_chunk(None) is None
    assert resolve_task_chunk(4) == 4 and resolve_task_chunk("8") == 8
    for bad in ("fast", 0, 2.5, True):
        with pytest.raises(ValueError, match="task_chunk"):
            resolve_task_chunk(bad)
