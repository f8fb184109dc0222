"""MAML++ and models with state (float64 where numerics): each technique against its definition."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import mlp_loss, regression_tasks, tanh_mlp_init

import metajax as mj
from metajax.models import (
    conv4_per_step,
    from_linen_stateful,
    stateful_cross_entropy_loss,
    stateful_cross_entropy_query_loss,
)

pytestmark = pytest.mark.x64  # closed forms, finite differences and tight references: float64

ALPHA = 0.2
K = 3


def ctx(step=0, state=None, keys=None):
    return mj.MetaContext(jnp.int32(step), state, keys)


def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.fixture(scope="module")
def problem():
    key = jax.random.PRNGKey(3)
    params = tanh_mlp_init(key, (2, 8, 1))
    tasks = regression_tasks(jax.random.PRNGKey(4), num_tasks=3, din=2)
    maml_grad = mj.maml(mlp_loss, "sgd", K, inner_lr=ALPHA).meta_grad(params, tasks)[0]
    fomaml_grad = mj.fomaml(mlp_loss, "sgd", K, inner_lr=ALPHA).meta_grad(params, tasks)[0]
    return params, tasks, maml_grad, fomaml_grad


def test_every_option_off_is_maml(problem):
    params, tasks, maml_grad, _ = problem
    learner = mj.maml_plus_plus(mlp_loss, None, K, inner_lr=ALPHA, lslr=False, stateful=False)
    direction, metrics, state = learner.meta_grad(learner.init(params), tasks, ctx())
    assert direction.lrs is None and state is None
    assert max_diff(direction.params, maml_grad) < 1e-13


def test_msl_with_last_step_weights_is_maml(problem):
    params, tasks, maml_grad, _ = problem
    learner = mj.maml_plus_plus(
        mlp_loss,
        None,
        K,
        inner_lr=ALPHA,
        lslr=False,
        stateful=False,
        msl_weights_fn=lambda s: jnp.array([0.0, 0.0, 1.0]),
    )
    direction, _, _ = learner.meta_grad(learner.init(params), tasks, ctx())
    assert max_diff(direction.params, maml_grad) < 1e-13


def test_msl_is_the_weighted_sum_of_per_step_maml_objectives(problem):
    """MSL's meta-gradient is sum_t w_t * (the meta-gradient of MAML with t + 1 steps)."""
    params, tasks, _, _ = problem
    w = jnp.array([0.2, 0.3, 0.5])
    learner = mj.maml_plus_plus(
        mlp_loss, None, K, inner_lr=ALPHA, lslr=False, stateful=False, msl_weights_fn=lambda s: w
    )
    direction, _, _ = learner.meta_grad(learner.init(params), tasks, ctx())
    per_step = [mj.maml(mlp_loss, "sgd", t + 1, inner_lr=ALPHA).meta_grad(params, tasks)[0] for t in range(K)]
    expected = jax.tree.map(lambda *g: sum(wi * gi for wi, gi in zip(w, g, strict=True)), *per_step)
    assert max_diff(direction.params, expected) < 1e-13


def test_msl_weights_schedule():
    w0 = np.asarray(mj.msl_weights(5, 0, 100))
    np.testing.assert_allclose(w0, 0.2)
    mid = np.asarray(mj.msl_weights(5, 50, 100))
    np.testing.assert_allclose(mid.sum(), 1.0, rtol=1e-12)
    assert mid[-1] > 0.2 and np.all(mid[:-1] < 0.2)
    late = np.asarray(mj.msl_weights(5, 99, 100))
    np.testing.assert_allclose(late[:-1], 0.03 / 5)  # the floor while annealing
    np.testing.assert_allclose(np.asarray(mj.msl_weights(5, 100, 100)), [0, 0, 0, 0, 1])


def test_lslr_rates_at_alpha_give_maml_and_their_gradient_matches_finite_differences(problem):
    params, tasks, maml_grad, _ = problem
    learner = mj.maml_plus_plus(mlp_loss, None, K, inner_lr=ALPHA, stateful=False)
    mp = learner.init(params)
    assert all(r.shape == (K,) for r in jax.tree.leaves(mp.lrs))
    grad_fn = jax.jit(learner.meta_grad)
    direction, _, _ = grad_fn(mp, tasks, ctx())
    assert max_diff(direction.params, maml_grad) < 1e-13

    def objective(lrs):
        return grad_fn(mj.MAMLPlusPlusParams(params, lrs), tasks, ctx())[1]["query_loss"]

    h = 1e-5
    leaves, treedef = jax.tree.flatten(mp.lrs)
    for leaf_index, t in ((0, 0), (1, 2), (len(leaves) - 1, 1)):
        bumped = [
            [leaf.at[t].add(s * h) if i == leaf_index else leaf for i, leaf in enumerate(leaves)] for s in (1, -1)
        ]
        plus, minus = (objective(jax.tree.unflatten(treedef, b)) for b in bumped)
        fd = (plus - minus) / (2 * h)
        got = jax.tree.leaves(direction.lrs)[leaf_index][t]
        assert abs(float(got - fd)) < 1e-8 * max(1.0, abs(float(fd))), (leaf_index, t, float(got), float(fd))


def test_derivative_order_annealing_switches_inside_one_program(problem):
    params, tasks, maml_grad, fomaml_grad = problem
    traces = []

    def loss(p, b):
        traces.append(1)
        return mlp_loss(p, b)

    learner = mj.maml_plus_plus(loss, None, K, inner_lr=ALPHA, lslr=False, stateful=False, first_order_steps=5)
    grad_fn = jax.jit(learner.meta_grad)
    mp = learner.init(params)
    before, m_before, _ = grad_fn(mp, tasks, ctx(4))
    n = len(traces)
    after, m_after, _ = grad_fn(mp, tasks, ctx(5))
    assert len(traces) == n  # the switch reuses the compiled program
    assert max_diff(before.params, fomaml_grad) < 1e-13 and int(m_before["first_order"]) == 1
    assert max_diff(after.params, maml_grad) < 1e-13 and int(m_after["first_order"]) == 0


# ---------------------------------------------------------------------------
# Models with state.
# ---------------------------------------------------------------------------


def images(key, num_tasks=2, shots=2, queries=2, ways=3, size=16):
    k1, k2 = jax.random.split(key)
    xs = jax.random.normal(k1, (num_tasks, ways * shots, size, size, 1), jnp.float64)
    xq = jax.random.normal(k2, (num_tasks, ways * queries, size, size, 1), jnp.float64)
    ys = jnp.tile(jnp.repeat(jnp.arange(ways), shots), (num_tasks, 1))
    yq = jnp.tile(jnp.repeat(jnp.arange(ways), queries), (num_tasks, 1))
    return mj.Task((xs, ys), (xq, yq))


def as64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64), tree)


@pytest.fixture(scope="module")
def conv_problem():
    model = conv4_per_step(ways=3, filters=4, image_size=16, num_steps=2, conv="xla")
    params, state = model.init(jax.random.PRNGKey(0))
    return model, as64(params), state, images(jax.random.PRNGKey(1))


def conv_learner(model, steps=2, **kw):
    kw.setdefault("lslr", False)
    kw.setdefault("task_chunk", 1)  # lax.map: no grouped convolutions (see conv4's known XLA:CPU issue)
    return mj.maml_plus_plus(
        stateful_cross_entropy_loss(model), None, steps, inner_lr=0.3, has_aux=True, adapt="Conv|head", **kw
    )


def test_per_step_batch_norm_with_identical_rows_equals_shared_batch_norm(conv_problem):
    model, params, state, tasks = conv_problem
    shared = conv4_per_step(ways=3, filters=4, image_size=16, num_steps=None, conv="xla")
    sparams, sstate = shared.init(jax.random.PRNGKey(0))
    sparams = as64(sparams)
    per_step_grad, _, _ = jax.jit(conv_learner(model).meta_grad)(
        conv_learner(model).init(params), tasks, ctx(state=state)
    )
    shared_grad, _, _ = jax.jit(conv_learner(shared).meta_grad)(
        conv_learner(shared).init(sparams), tasks, ctx(state=sstate)
    )
    for name in ("Conv_0", "Conv_3", "head"):
        assert max_diff(per_step_grad.params["params"][name], shared_grad.params["params"][name]) < 1e-12
    for i in range(4):
        rows = per_step_grad.params["params"][f"Norm_{i}"]
        summed = jax.tree.map(lambda r: r.sum(axis=0), rows)
        assert max_diff(summed, shared_grad.params["params"][f"Norm_{i}"]) < 1e-12


def conv0(params, x):
    p = params["params"]["Conv_0"]
    dn = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=dn) + p["bias"].reshape(
        1, 1, 1, -1
    )


def test_per_step_running_statistics_equal_a_hand_computation(conv_problem):
    model, params, state, tasks = conv_problem
    state = as64(state)  # the running averages in float64 (init makes them float32), the rest of the test is float64
    learner = conv_learner(model)
    mp = learner.init(params)
    _, _, new_state = jax.jit(learner.meta_grad)(mp, tasks, ctx(state=state))
    # The parameters each task's support pass sees at steps 0 and 1 (one step of the same inner loop).
    one_step = conv_learner(model, steps=1)
    expected_mean, expected_var = [], []
    for i in range(2):
        support = jax.tree.map(lambda a, i=i: a[i], tasks.support)
        p1 = jax.jit(one_step.adapt)(one_step.init(params), support, model_state=state).params
        rows = []
        for p in (params, p1):
            a = np.asarray(conv0(p, support[0]))
            n = a.shape[0] * a.shape[1] * a.shape[2]
            rows.append((a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2)) * n / (n - 1)))
        expected_mean.append([0.1 * m for m, _ in rows])
        expected_var.append([0.9 + 0.1 * v for _, v in rows])
    got = new_state["batch_stats"]["Norm_0"]
    # Not float64-tight, by design: PerStepBatchNorm computes the batch mean and variance that enter the running
    # averages in float32 (metajax/_src/models.py, ``x.astype(jnp.float32)``), so the floor is float32 reduction
    # rounding. XLA's float32 mean / variance of 1536 values like these (|a| ~ 0.5-0.9) is off by up to 1.3e-8
    # (absolute) / 1.4e-7 (relative) over 300 random draws, a sequential sum by up to 8.4e-8 / 2.4e-6; times the
    # momentum 0.1 that is <= 8.4e-9 on the running mean and <= 2.4e-8 relative on the running variance (~1).
    # The mean gets an absolute tolerance (its entries, 4e-5 to 2e-3, are sums that cancel; the rounding follows
    # the activations' scale, not theirs).
    assert got["mean"].dtype == got["var"].dtype == np.float64
    np.testing.assert_allclose(got["mean"], np.mean(expected_mean, axis=0), rtol=0, atol=1e-8)  # measured: 3.2e-10
    np.testing.assert_allclose(got["var"], np.mean(expected_var, axis=0), rtol=1e-7)  # measured: 1.1e-8 (relative)
    # The non-transductive mode reads those statistics: a query example's score does not depend on the others.
    qloss = stateful_cross_entropy_query_loss(model, "running")
    x = tasks.query[0][0]
    one = model.apply(params, new_state, x[:1], step=1, mode="running", update=False)[0]
    many = model.apply(params, new_state, x, step=1, mode="running", update=False)[0][:1]
    np.testing.assert_allclose(one, many, rtol=1e-12)
    assert np.isfinite(float(qloss(params, new_state, (x, tasks.query[1][0]), None, 1, None)[0]))


class DropoutNet(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        x = nn.Dense(6, param_dtype=jnp.float64)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, param_dtype=jnp.float64)(x)
        x = nn.Dropout(0.3, deterministic=not train)(jnp.tanh(x))
        return nn.Dense(1, param_dtype=jnp.float64)(x)


@pytest.fixture(scope="module")
def dropout_problem():
    model = from_linen_stateful(DropoutNet(), (2,), rngs=("dropout",))
    params, state = model.init(jax.random.PRNGKey(5))

    def loss(p, s, batch, step, key):
        x, y = batch
        out, s = model.apply(p, s, x, step=step, key=key)
        return jnp.mean(jnp.square(out - y)), s

    tasks = regression_tasks(jax.random.PRNGKey(6), num_tasks=3, din=2)
    return model, loss, params, state, tasks


def test_exact_meta_gradient_of_batch_norm_and_dropout_matches_finite_differences(dropout_problem):
    _, loss, params, state, tasks = dropout_problem
    learner = mj.maml_plus_plus(loss, None, 2, inner_lr=0.1, lslr=False)
    keys = jax.random.split(jax.random.key(7), 3)
    grad_fn = jax.jit(learner.meta_grad)
    mp = learner.init(params)
    direction, _, new_state = grad_fn(mp, tasks, ctx(state=state, keys=keys))
    assert max_diff(new_state, state) > 1e-3  # the running statistics moved

    def objective(p):
        return grad_fn(mj.MAMLPlusPlusParams(p, None), tasks, ctx(state=state, keys=keys))[1]["query_loss"]

    v = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(a.size), a.shape, a.dtype), params)
    h = 1e-5
    plus = objective(jax.tree.map(lambda a, b: a + h * b, params, v))
    minus = objective(jax.tree.map(lambda a, b: a - h * b, params, v))
    fd = (plus - minus) / (2 * h)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(direction.params), jax.tree.leaves(v), strict=True))
    assert abs(float(analytic - fd)) < 1e-7 * max(1.0, abs(float(fd)))
    # Dropout depends on the key: another key gives another meta-gradient, the same key the same bits.
    other = grad_fn(mp, tasks, ctx(state=state, keys=jax.random.split(jax.random.key(8), 3)))[0]
    again = grad_fn(mp, tasks, ctx(state=state, keys=keys))[0]
    assert max_diff(other, direction) > 1e-6 and max_diff(again, direction) == 0.0


def test_vmap_and_lax_map_agree_and_the_meta_step_threads_state_and_keys(dropout_problem):
    _, loss, params, state, tasks = dropout_problem
    outs = []
    for chunk in (None, 1):
        learner = mj.maml_plus_plus(loss, None, 2, inner_lr=0.1, task_chunk=chunk)
        ms = mj.make_meta_step(learner, optax.adam(1e-2))
        mp = learner.init(params)
        st = ms.init(mp, state, jax.random.key(0))
        step = jax.jit(ms.step)
        for _ in range(2):
            mp, st, metrics = step(mp, st, tasks)
        outs.append((mp, st.model_state))
        assert int(st.step) == 2 and st.key is not None
    assert max_diff(outs[0], outs[1]) < 1e-9  # summation order only (Adam magnifies it near zero gradients)


def test_bad_input_is_refused_before_compiling(problem, dropout_problem, conv_problem):
    params, tasks, _, _ = problem
    plain = mj.make_meta_step(mj.maml(mlp_loss, "sgd", 1), optax.sgd(0.1))
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        plain.init(params, key=7)
    _, loss, dparams, dstate, dtasks = dropout_problem
    learner = mj.maml_plus_plus(loss, None, 2)
    with pytest.raises(ValueError, match="needs key="):
        jax.jit(learner.meta_grad).trace(learner.init(dparams), dtasks, ctx(state=dstate))
    model = conv_problem[0]
    with pytest.raises(ValueError, match="model_steps must equal num_inner_steps"):
        mj.maml_plus_plus(stateful_cross_entropy_loss(model), None, 3, model_steps=model.num_steps)
    with pytest.raises(ValueError, match="Implicit"):
        mj.maml_plus_plus(mlp_loss, None, 2, gradient="implicit", stateful=False)
    with pytest.raises(ValueError, match="inner_opt must be None or 'sgd'"):
        mj.maml_plus_plus(mlp_loss, "adam", 2, stateful=False)
    with pytest.raises(ValueError, match="first_order_steps must be an integer >= 0"):
        mj.maml_plus_plus(mlp_loss, None, 2, first_order_steps=-1, stateful=False)
    learner = mj.maml_plus_plus(mlp_loss, None, 2, stateful=False)
    with pytest.raises(ValueError, match="context must be a metajax.MetaContext"):
        learner.meta_grad(learner.init(params), tasks, {"step": 0})
    with pytest.raises(ValueError, match="num_steps must be 2"):
        learner.adapt(learner.init(params), jax.tree.map(lambda a: a[0], tasks.support), num_steps=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.apply(*model.init(jax.random.PRNGKey(0)), jnp.ones((2, 16, 16, 1)), mode="eval")


def test_running_statistics_and_key_resume_bit_exactly_from_a_checkpoint(dropout_problem, tmp_path):
    from metajax._src.app.checkpoint import Checkpointer

    _, loss, params, state, tasks = dropout_problem
    learner = mj.maml_plus_plus(loss, None, 2, inner_lr=0.1)
    ms = mj.make_meta_step(learner, optax.adam(1e-2))
    step = jax.jit(ms.step)

    def run(mp, st, n):
        for _ in range(n):
            mp, st, _ = step(mp, st, tasks)
        return mp, st

    mp0 = learner.init(params)
    st0 = ms.init(mp0, state, jax.random.PRNGKey(11))  # a raw uint32 key: saved like any array
    straight = run(mp0, st0, 4)
    mp, st = run(mp0, st0, 2)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    ckpt.save(2, {"meta_params": mp, "state": st}, {"best": {"score": None, "step": None}})
    ckpt.close()
    template = {"meta_params": mp0, "state": st0}
    tree, record = Checkpointer(tmp_path / "checkpoints").restore_latest(template)
    assert record["step"] == 2 and isinstance(tree["state"], mj.MetaState)
    resumed = run(tree["meta_params"], tree["state"], 2)
    assert max_diff(resumed, straight) == 0.0
