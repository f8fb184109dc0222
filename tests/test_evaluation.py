"""Evaluation summaries and a short sinusoid training run."""

import math

import jax
import numpy as np
import optax
import pytest

import metajax as mj
from metajax._src.data import sinusoid
from metajax.evaluation import adaptation_curves, markdown_table, plain_adapter, summarize
from metajax.models import mlp, mse_loss


def test_summarize_counts_diverged_and_keeps_median_robust():
    curves = np.array([[1.0, 0.5], [2.0, np.nan], [3.0, 1e6], [4.0, 1.0]])
    rows = summarize(curves, [0, 1], diverged_above=100.0)
    assert rows[0]["diverged"] == 0 and math.isclose(rows[0]["mean"], 2.5)
    np.testing.assert_allclose(rows[0]["ci95"], 1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)
    assert rows[1]["diverged"] == 2
    assert math.isclose(rows[1]["mean"], 0.75)  # over the two tasks that did not diverge
    assert rows[1]["mean_all"] == math.inf
    assert rows[1]["median"] == (1.0 + 1e6) / 2
    assert "0.750 ±" in markdown_table({"a": rows})


def test_sampler_is_a_pure_function_of_the_key():
    a = sinusoid.sample_tasks(jax.random.PRNGKey(0), 4, shots=5, query_shots=7)
    b = jax.jit(lambda k: sinusoid.sample_tasks(k, 4, shots=5, query_shots=7))(jax.random.PRNGKey(0))
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    c = sinusoid.sample_tasks(jax.random.PRNGKey(1), 4, shots=5, query_shots=7)
    assert not np.allclose(a.support[0], c.support[0])
    assert a.support[0].shape == (4, 5, 1) and a.query[0].shape == (4, 7, 1)
    x = a.support[0]
    assert float(x.min()) >= -5 and float(x.max()) <= 5
    # y = A sin(x - phase) with A in [0.1, 5]
    assert float(np.abs(a.support[1]).max()) <= 5.0


@pytest.mark.x64
def test_short_maml_run_lowers_post_adaptation_loss():
    """Deterministic: 400 meta-steps of MAML lower the 1-step query MSE on held-out tasks."""
    model = mlp(hidden=(40, 40))
    loss = mse_loss(model.apply)
    learner = mj.maml(loss, "sgd", 1, inner_lr=0.01)
    params = jax.tree_util.tree_map(lambda x: x.astype("float64"), model.init(jax.random.PRNGKey(0)))
    ms = mj.make_meta_step(learner, optax.adam(3e-3))
    run = jax.jit(mj.make_train_loop(ms, lambda k: sinusoid.sample_tasks(k, 10, 10), 400))
    trained, _, metrics = run(params, ms.init(params), jax.random.PRNGKey(1))
    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(99), 100, 10, 50)
    before = adaptation_curves(learner.adapt, params, learner.query_loss, tasks, 1)
    after = adaptation_curves(learner.adapt, trained, learner.query_loss, tasks, 1)
    assert after[:, 1].mean() < 0.6 * before[:, 1].mean()
    assert float(metrics["query_loss"][-50:].mean()) < float(metrics["query_loss"][:50].mean())
    # the plain adapter used for baselines gives the same curve as the learner for MAML
    base = adaptation_curves(plain_adapter(loss, optax.sgd(0.01)), trained, learner.query_loss, tasks, 1)
    np.testing.assert_allclose(base, after, rtol=1e-12)


@pytest.mark.x64
def test_scoring_in_calls_matches_one_call_compiles_once_and_reports_progress():
    """``tasks_per_call``: the same per-task numbers as one call, one trace for every batch size above it (float64)."""
    import jax.numpy as jnp
    import pytest

    from metajax.evaluation import adaptation_scorer

    traces = []

    def loss(w, batch):
        x, y = batch
        return jnp.mean((jnp.tanh(x @ w["a"]) @ w["b"] - y) ** 2)

    def qloss(p, query, support):
        traces.append(query[0].shape)  # runs once per trace, not per call
        value = loss(p, query)
        return value, {"accuracy": jnp.exp(-value)}

    f64 = jnp.float64
    w = {
        "a": jax.random.normal(jax.random.PRNGKey(0), (2, 8), f64),
        "b": jax.random.normal(jax.random.PRNGKey(1), (8, 1), f64),
    }
    x = jax.random.normal(jax.random.PRNGKey(2), (9, 10, 2), f64)
    tasks = mj.Task((x[:, :4], jnp.sin(x[:, :4, :1])), (x[:, 4:], jnp.cos(x[:, 4:, :1])))
    learner = mj.maml(loss, "sgd", 2, inner_lr=0.1)
    whole = adaptation_scorer(learner, qloss, 2, 1)(w, tasks)
    assert len(traces) == 1
    calls = adaptation_scorer(learner, qloss, 2, 1, tasks_per_call=4)
    seen = []
    loss9, acc9 = calls(w, tasks, lambda done, total: seen.append((done, total)))
    assert seen == [(4, 9), (8, 9), (9, 9)]  # 4 + 4 + 1 (padded to 4)
    assert loss9.dtype == np.float64
    # the same per-task computation batched differently; every value is >= 0.29, so rtol alone
    np.testing.assert_allclose(loss9, whole[0], rtol=1e-13)  # measured: 0 (bit-identical)
    np.testing.assert_allclose(acc9, whole[1], rtol=1e-13)  # measured: 0
    loss7, _ = calls(w, jax.tree_util.tree_map(lambda a: a[:7], tasks))  # 4 + 3 (padded): the same program
    np.testing.assert_allclose(loss7, whole[0][:7], rtol=1e-13)  # measured: 0
    assert len(traces) == 2  # one trace for the 4-task calls, whatever the batch size
    small, _ = calls(w, jax.tree_util.tree_map(lambda a: a[:3], tasks))  # fewer than 4: one call of 3
    np.testing.assert_allclose(small, whole[0][:3], rtol=1e-13)  # measured: 0
    with pytest.raises(ValueError, match="tasks_per_call must be an integer >= 1, got 0"):
        adaptation_scorer(learner, qloss, 2, 1, tasks_per_call=0)
    with pytest.raises(ValueError, match="at least one task"):
        calls(w, jax.tree_util.tree_map(lambda a: a[:0], tasks))
