"""ResNet-12: every convolution implementation against plain autodiff of lax.conv, DropBlock, the stateful form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import session_shared

import metajax as mj
from metajax.models import (
    drop_block,
    leaky_relu_max_pool_2x2,
    max_pool_2x2,
    resnet12,
    resnet12_stateful,
    stateful_cross_entropy_loss,
)

WIDTHS = (8, 8, 10, 12)  # >= 8 channels at >= 8x8 with 16 images: the Winograd layers take their Winograd path


def f64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64), tree)


def derivatives(model, params, x, order):
    """Value and gradient (``order=1``), and a second-order term (``order=2``), of a loss using both batch-norm
    policies."""
    ref = x[:4]

    def loss(p):
        return jnp.sum(jnp.sin(model.apply(p, x))) + jnp.sum(model.apply(p, x, reference=ref) ** 2)

    grad = jax.grad(loss)
    if order == 1:
        return loss(params), grad(params)
    second = jax.grad(lambda p: sum(jnp.sum(g**2) for g in jax.tree.leaves(grad(p))))
    return loss(params), grad(params), second(params)


def reference(order):
    """Plain autodiff of lax.conv, the batch-norm formula, leaky ReLU and max-pool.

    Jitted (op by op it takes minutes); XLA:CPU's known miscompile of the reshaped max-pool's gradient needs wide
    channel rows, far above these widths (conv4's tests compare the same forms op by op). Compiling a ResNet-12's
    second derivatives takes 1-2 minutes here, so the second-order comparisons are marked slow.
    """

    def compute():
        model = resnet12(ways=3, widths=WIDTHS, image_size=16, conv="xla", closed_form=False)
        params = f64(model.init(jax.random.PRNGKey(0)))
        x = jnp.round(4 * jax.random.normal(jax.random.PRNGKey(1), (16, 16, 16, 3), jnp.float64)) / 4
        return params, x, jax.jit(lambda p: derivatives(model, p, x, order))(params)

    return session_shared(f"resnet12_reference_{order}", compute)


def check_against_reference(conv, order):
    params, x, want = reference(order)
    model = resnet12(ways=3, widths=WIDTHS, image_size=16, conv=conv)
    assert jax.tree.structure(params) == jax.tree.structure(model.init(jax.random.PRNGKey(0)))
    got = jax.jit(lambda p: derivatives(model, p, x, order))(params)
    for a, b in zip(want, got, strict=True):
        scale = max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(a))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(v, u, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.x64
def test_resnet12_gradient_agrees_with_plain_autodiff():
    check_against_reference("auto", 1)  # the CPU default: Winograd where it pays, im2col elsewhere


@pytest.mark.x64
@pytest.mark.slow
@pytest.mark.parametrize("conv", ["xla", "patches", "winograd", "lax_vjp"])
def test_resnet12_agrees_with_plain_autodiff_to_second_order(conv):
    check_against_reference(conv, 2)


def test_full_width_resnet12_has_the_published_size():
    model = resnet12(ways=5)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    # 12.4 M as reported for the 64-160-320-640 ResNet-12 (Lee et al. 2019): conv and shortcut weights, the
    # batch-norm scales and biases and a 5-way head
    assert 12_400_000 < count < 12_500_000, count
    out = jax.eval_shape(model.apply, shapes, jax.ShapeDtypeStruct((2, 84, 84, 3), jnp.float32))
    assert out.shape == (2, 5)


@pytest.mark.x64
@pytest.mark.parametrize("shape", [(3, 6, 8, 2), (2, 7, 5, 3)])
def test_leaky_relu_max_pool_matches_autodiff_with_ties_to_second_order(shape):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jnp.round(2 * jax.random.normal(k1, shape, jnp.float64)) / 2  # many ties, zeros and negative maxima
    w = jax.random.normal(k2, (shape[0], shape[1] // 2, shape[2] // 2, shape[3]), jnp.float64)
    v = jax.random.normal(k3, shape, jnp.float64)

    def derivatives(pool):
        f = lambda x: jnp.sum(jnp.sin(pool(x)) * w)  # noqa: E731
        return f(x), jax.grad(f)(x), jax.grad(lambda x: jnp.sum(jax.grad(f)(x) * v) + f(x) ** 2)(x)

    got = jax.jit(lambda: derivatives(lambda x: leaky_relu_max_pool_2x2(x, 0.1)))()
    want = jax.jit(lambda: derivatives(lambda x: jax.nn.leaky_relu(max_pool_2x2(x), 0.1)))()
    assert int(jnp.sum(got[1] < 0)) > 0 and int(jnp.sum(got[1] == 0)) > 0  # both slopes and unused inputs met
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_drop_block_drops_square_blocks_at_the_rate_and_rescales():
    x = jnp.ones((32, 20, 20, 4))
    out = drop_block(x, jax.random.PRNGKey(0), 0.1, 5)
    kept = out > 0
    dropped = float(1 - jnp.mean(kept))
    assert 0.07 < dropped < 0.13, dropped  # overlapping blocks drop a little less than the rate
    np.testing.assert_allclose(float(jnp.mean(out)), 1.0, rtol=1e-6)  # kept units rescaled
    # every dropped unit lies in a dropped 5x5 square
    holes = np.asarray(~kept)
    n, c = np.nonzero(holes.any(axis=(1, 2)))[0][0], np.nonzero(holes.any(axis=(0, 1, 2)))[0][0]
    ys, xs = np.nonzero(holes[n, :, :, c])
    assert any(holes[n, y0 : y0 + 5, x0 : x0 + 5, c].all() for y0 in range(16) for x0 in range(16))
    assert len(ys) >= 25
    np.testing.assert_array_equal(drop_block(x, jax.random.PRNGKey(0), 0.1, 5), out)  # the key decides
    assert float(jnp.min(drop_block(x[:, :3, :3], jax.random.PRNGKey(1), 0.0, 5))) == 1.0  # block clipped, rate 0


@pytest.fixture(scope="module")
def stateful_problem():
    model = resnet12_stateful(ways=3, widths=(4, 4, 6, 6), image_size=16, drop_rate=0.2, drop_block_size=3)
    params, state = jax.jit(model.init)(jax.random.PRNGKey(0))
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    xs = jax.random.normal(k1, (2, 6, 16, 16, 3), jnp.float64)
    xq = jax.random.normal(k2, (2, 6, 16, 16, 3), jnp.float64)
    ys = jnp.tile(jnp.repeat(jnp.arange(3), 2), (2, 1))
    tasks = mj.Task((xs, ys), (xq, ys))
    learner = mj.maml_plus_plus(
        stateful_cross_entropy_loss(model),
        None,
        2,
        inner_lr=0.3,
        lslr=False,
        has_aux=True,
        adapt="Conv|head",
        task_chunk=1,
    )
    return model, f64(params), state, tasks, learner


@pytest.mark.x64
@pytest.mark.slow  # compiling exact MAML through a ResNet-12 takes minutes
def test_exact_meta_gradient_with_drop_block_and_running_statistics_matches_finite_differences(stateful_problem):
    model, params, state, tasks, learner = stateful_problem
    assert model.needs_key
    keys = jax.random.split(jax.random.key(3), 2)
    grad_fn = jax.jit(learner.meta_grad)
    ctx = mj.MetaContext(jnp.zeros((), jnp.int32), state, keys)
    direction, _, new_state = grad_fn(learner.init(params), tasks, ctx)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new_state, state)
    assert max(jax.tree.leaves(moved)) > 1e-3  # running statistics were updated

    def objective(p):
        return grad_fn(mj.MAMLPlusPlusParams(p, None), tasks, ctx)[1]["query_loss"]

    v = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(a.size), a.shape, a.dtype), params)
    # Two inner steps at rate 0.3 through batch norm over six examples make the meta-objective sharply curved
    # (and leaky ReLU / max-pool add kinks): the central difference along v is 8641 at h=1e-6, -152.705 at 1e-7 and
    # agrees with the analytic -152.695007 to ~1e-9 at 1e-8 and 3e-9; its rounding error there is ~1e-7.
    h = 1e-8
    fd = (
        objective(jax.tree.map(lambda a, b: a + h * b, params, v))
        - objective(jax.tree.map(lambda a, b: a - h * b, params, v))
    ) / (2 * h)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(direction.params), jax.tree.leaves(v), strict=True))
    norm = float(jnp.sqrt(sum(jnp.vdot(g, g) for g in jax.tree.leaves(direction.params))))
    vnorm = float(jnp.sqrt(sum(jnp.vdot(d, d) for d in jax.tree.leaves(v))))
    assert abs(float(analytic - fd)) < 1e-9 * norm * vnorm, (float(analytic), float(fd))
    # DropBlock follows the keys: other keys another meta-gradient, the same keys the same bits
    other_keys = jax.random.split(jax.random.key(4), 2)
    other = grad_fn(learner.init(params), tasks, mj.MetaContext(ctx.step, state, other_keys))
    again = grad_fn(learner.init(params), tasks, ctx)

    def diff(a, b):
        return max(float(jnp.max(jnp.abs(u - w))) for u, w in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    assert diff(other[0], direction) > 1e-6 and diff(again[0], direction) == 0.0


@pytest.mark.x64
def test_without_a_key_the_stateful_resnet_is_deterministic_and_running_mode_scores_alone(stateful_problem):
    model, params, state, tasks, _ = stateful_problem
    x = tasks.query[0][0]
    apply = jax.jit(model.apply, static_argnames="mode")
    a, _ = apply(params, state, x)
    b, _ = apply(params, state, x)
    c, _ = apply(params, state, x, key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-6
    # the running mode scores each example on its own: changing the others leaves its output unchanged
    full, _ = apply(params, state, x, mode="running")
    other, _ = apply(params, state, x.at[1:].set(-x[1:]), mode="running")
    np.testing.assert_array_equal(other[:1], full[:1])
    assert float(jnp.max(jnp.abs(other[1:] - full[1:]))) > 1e-6


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="widths must be four positive ints"):
        resnet12(widths=(64, 160, 320))
    with pytest.raises(ValueError, match="negative_slope must be a number >= 0"):
        resnet12(negative_slope=-1)
    with pytest.raises(ValueError, match=r"drop_rate must be a number in \[0, 1\)"):
        resnet12_stateful(drop_rate=1.0)
    with pytest.raises(ValueError, match="drop_block_size must be a positive int"):
        resnet12_stateful(drop_block_size=0)
    with pytest.raises(ValueError, match="conv must be one of"):
        resnet12(conv="fft")
    with pytest.raises(ValueError, match="compute_dtype"):
        resnet12(compute_dtype="int8")
