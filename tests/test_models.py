"""Models: Flax modules through a pure apply, the batch-norm policy, conv-net meta-gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import session_shared
from jax.flatten_util import ravel_pytree
from test_maml import directional_fd_check

import metajax as mj
from metajax.models import conv4, cross_entropy_loss, cross_entropy_query_loss, max_pool_2x2, mlp

pytestmark = pytest.mark.x64  # closed forms, finite differences and tight references: float64


def f64(tree):
    return jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), tree)


@pytest.fixture(scope="module")
def small_conv():
    model = conv4(ways=3, filters=4, image_size=16)
    return model, f64(model.init(jax.random.PRNGKey(0)))


def image_tasks(key, num_tasks=2, ways=3, shots=1, query=2, size=16):
    k1, k2 = jax.random.split(key)
    xs = jax.random.normal(k1, (num_tasks, ways * shots, size, size, 1), jnp.float64)
    xq = jax.random.normal(k2, (num_tasks, ways * query, size, size, 1), jnp.float64)
    ys = jnp.tile(jnp.repeat(jnp.arange(ways), shots), (num_tasks, 1))
    yq = jnp.tile(jnp.repeat(jnp.arange(ways), query), (num_tasks, 1))
    return mj.Task((xs, ys), (xq, yq))


def test_mlp_shapes():
    m = mlp()
    p = m.init(jax.random.PRNGKey(0))
    assert m.apply(p, jnp.zeros((7, 1))).shape == (7, 1)
    assert [x.shape for x in jax.tree_util.tree_leaves(p)] == [(40,), (1, 40), (40,), (40, 40), (1,), (40, 1)]


@pytest.mark.parametrize("size,flat", [(28, 64), (84, 5 * 5 * 32)])
def test_conv4_input_sizes(size, flat):
    filters = 64 if size == 28 else 32
    model = conv4(ways=5, filters=filters, image_size=size, channels=1 if size == 28 else 3)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    assert shapes["params"]["head"]["kernel"].shape == (flat, 5)


def test_batchnorm_policy(small_conv):
    model, params = small_conv
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 16, 16, 1), jnp.float64)
    ref = jax.random.normal(jax.random.PRNGKey(2), (3, 16, 16, 1), jnp.float64)
    # non-transductive: each example's output depends only on itself and the reference batch
    full = model.apply(params, x, reference=ref)
    one_by_one = jnp.concatenate([model.apply(params, x[i : i + 1], reference=ref) for i in range(6)])
    np.testing.assert_allclose(full, one_by_one, rtol=1e-10, atol=1e-12)
    # transductive: changing other examples changes an example's output
    trans = model.apply(params, x)
    trans2 = model.apply(params, x.at[1:].multiply(3.0))
    assert not np.allclose(trans[0], trans2[0])
    nontrans2 = model.apply(params, x.at[1:].multiply(3.0), reference=ref)
    np.testing.assert_allclose(full[0], nontrans2[0], rtol=1e-10, atol=1e-12)


def test_conv4_exact_meta_gradient_matches_finite_differences_k2(small_conv):
    """Conv + batch norm + max-pool + ReLU, two inner steps (float64)."""
    model, params = small_conv
    tasks = image_tasks(jax.random.PRNGKey(3))
    learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 2, inner_lr=0.4, has_aux=True)
    grad, metrics, _ = jax.jit(learner.meta_grad)(params, tasks)
    assert set(metrics) == {"query_loss", "support_loss", "query_accuracy"}
    # Fourth-order stencil at h = 1e-6: the nearest ReLU / max-pool kink along the two directions lies between 6e-6
    # and 2e-5 (h = 3e-6 is still clean, 1e-5 crosses one), so [-2h, 2h] is 3x clear of it; truncation is negligible
    # (the plain central difference's h^2 term is 3e-10 here), rounding ~1.5 ulp(F) / h = 6e-12 of |grad| |v|.
    directional_fd_check(
        learner, params, tasks, grad, jax.random.PRNGKey(4), eps=1e-6, num_dirs=2, rtol=1e-11
    )  # measured: 3e-13 and 9e-13 of |grad| |v| (was 7e-11 and 3e-10 with the second-order stencil)


def test_non_transductive_query_loss_is_used(small_conv):
    model, params = small_conv
    tasks = image_tasks(jax.random.PRNGKey(5))
    trans = mj.maml(cross_entropy_loss(model.apply), "sgd", 1, inner_lr=0.4, has_aux=True)
    nontrans = mj.maml(
        cross_entropy_loss(model.apply),
        "sgd",
        1,
        inner_lr=0.4,
        has_aux=True,
        query_loss_fn=cross_entropy_query_loss(model.apply, bn="support"),
    )
    _, m1, _ = jax.jit(trans.meta_grad)(params, tasks)
    _, m2, _ = jax.jit(nontrans.meta_grad)(params, tasks)
    np.testing.assert_allclose(m1["support_loss"], m2["support_loss"])
    assert not np.allclose(m1["query_loss"], m2["query_loss"])
    with pytest.raises(ValueError, match="bn must be"):
        cross_entropy_query_loss(model.apply, bn="running")


@pytest.fixture(scope="module")
def conv_reference():
    """Plain autodiff of lax.conv, batch norm and ReLU-max-pool: value, gradient, second-order term."""

    def compute():  # op by op: ~30 s, so once per session (session_shared), not once per xdist worker
        model = conv4(ways=3, filters=4, image_size=16, conv="xla", closed_form=False)
        params = f64(model.init(jax.random.PRNGKey(0)))
        x = jnp.round(4 * jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1), jnp.float64)) / 4  # with ties
        return params, x, _value_grad_second(model, params, x)

    return session_shared("conv_reference", compute)


def _value_grad_second(model, params, x):
    ref = x[:2]

    def loss(p):
        return jnp.sum(jnp.sin(model.apply(p, x))) + jnp.sum(model.apply(p, x, reference=ref) ** 2)

    grad = jax.grad(loss)
    second = jax.grad(lambda p: sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grad(p))))
    return loss(params), grad(params), second(params)


@pytest.mark.parametrize(
    "conv,closed_form",
    [("patches", False), ("xla", True), ("patches", True), ("lax_vjp", True), ("lax_vjp", False)],
)
def test_conv_implementations_agree_to_second_order(conv_reference, conv, closed_form):
    params, x, ref = conv_reference
    # "winograd" is checked to third order by test_winograd_conv3x3_... and in the MAML strategy test
    model = conv4(ways=3, filters=4, image_size=16, conv=conv, closed_form=closed_form)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(model.init(jax.random.PRNGKey(0)))
    # the candidate under jit (how it runs in training; 3-4x faster here than op by op), the reference op by op
    out = jax.jit(lambda p: _value_grad_second(model, p, x))(params)
    for want, got in zip(ref, out, strict=True):
        # conv biases before batch norm have zero gradient (rounding-level values), so atol is relative to the
        # largest entry of the whole gradient
        scale = max(float(np.max(np.abs(leaf))) for leaf in jax.tree_util.tree_leaves(want))
        for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12 * scale)


def test_conv_bad_arguments():
    with pytest.raises(ValueError, match="conv must be one of"):
        conv4(conv="fft")
    with pytest.raises(TypeError, match="closed_form must be a bool"):
        conv4(closed_form="yes")


@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), ((0, 2), (1, 0)), ((2, 0), (0, 0))])
def test_conv_s1_is_lax_conv_with_correct_derivatives_to_third_order(padding):
    from jax.test_util import check_grads

    from metajax.models import conv_s1

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(k1, (2, 6, 5, 3), jnp.float64)
    w = jax.random.normal(k2, (3, 2, 3, 4), jnp.float64)
    dn = ("NHWC", "HWIO", "NHWC")
    np.testing.assert_allclose(
        conv_s1(x, w, padding), jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=dn), rtol=1e-12
    )
    check_grads(lambda a, b: conv_s1(a, b, padding), (x, w), order=3, modes=["rev"])
    # batched per-task weights (vmap) give the plain convolution's gradients
    ws = jnp.stack([w, -2 * w])

    def grads(conv):
        return jax.vmap(jax.grad(lambda w: jnp.sum(conv(x, w) ** 3)))(ws)

    plain = grads(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=dn))
    np.testing.assert_allclose(grads(lambda x, w: conv_s1(x, w, padding)), plain, rtol=1e-10)


@pytest.mark.parametrize("num_ref", [None, 2])
def test_closed_form_batch_norm_matches_autodiff_to_second_order(num_ref):
    from metajax.models import batch_norm

    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = 2 * jax.random.normal(k[0], (5, 3, 4, 3), jnp.float64) + 1
    scale, bias = jax.random.normal(k[1], (3,), jnp.float64), jax.random.normal(k[2], (3,), jnp.float64)
    w = jax.random.normal(k[3], x.shape, jnp.float64)

    def formula(x, s, b):
        ref = x if num_ref is None else x[:num_ref]
        mean = jnp.mean(ref, axis=(0, 1, 2), keepdims=True)
        var = jnp.mean(jnp.square(ref - mean), axis=(0, 1, 2), keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * s.reshape(1, 1, 1, 3) + b.reshape(1, 1, 1, 3)

    def derivatives(bn):
        f = lambda *a: jnp.sum(jnp.tanh(bn(*a)) * w)  # noqa: E731
        g = jax.grad(f, (0, 1, 2))
        h = jax.grad(lambda *a: sum(jnp.sum(t**2) for t in g(*a)), (0, 1, 2))
        return f(x, scale, bias), g(x, scale, bias), h(x, scale, bias)

    got = derivatives(lambda x, s, b: batch_norm(x, s, b, num_ref, 1e-5))
    want = derivatives(formula)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 6, 8, 2), (2, 7, 5, 3)])
def test_relu_max_pool_splits_tied_gradients_like_autodiff(shape):
    from metajax.models import max_pool_2x2, relu_max_pool_2x2

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jnp.round(2 * jax.random.normal(k1, shape, jnp.float64)) / 2  # many ties, many zeros
    w = jax.random.normal(k2, (shape[0], shape[1] // 2, shape[2] // 2, shape[3]), jnp.float64)
    v = jax.random.normal(k3, shape, jnp.float64)

    def derivatives(pool):
        f = lambda x: jnp.sum(jnp.sin(pool(x)) * w)  # noqa: E731
        return f(x), jax.grad(f)(x), jax.grad(lambda x: jnp.sum(jax.grad(f)(x) * v) + f(x) ** 2)(x)

    got = derivatives(relu_max_pool_2x2)
    want = derivatives(lambda x: jax.nn.relu(max_pool_2x2(x)))
    assert int(jnp.sum(got[1] != 0)) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_nnx_and_linen_modules_work_through_pure_apply():
    import flax.linen as nn
    from flax import nnx

    from metajax._src.data import sinusoid
    from metajax.models import from_linen, from_nnx, mse_loss

    class NNXMLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(1, 8, rngs=rngs)
            self.l2 = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    class LinenMLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(jnp.tanh(nn.Dense(8)(x)))

    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(1), 3, 5)
    for model in (from_nnx(NNXMLP, (1,)), from_linen(LinenMLP(), (1,))):
        params = f64(model.init(jax.random.PRNGKey(0)))
        other = f64(model.init(jax.random.PRNGKey(1)))
        assert not all(
            np.allclose(a, b)
            for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(other), strict=True)
        )
        learner = mj.maml(mse_loss(model.apply), "sgd", 2, inner_lr=0.05)
        grad, _, _ = jax.jit(learner.meta_grad)(params, tasks)
        directional_fd_check(learner, params, tasks, grad, jax.random.PRNGKey(2))


@pytest.mark.parametrize("size", [8, 7])
def test_max_pool_2x2_equals_reduce_window(size):
    """Values and gradients of the reshape max-pool equal flax's reduce_window pool (odd sizes drop the tail)."""
    import flax.linen as nn

    from metajax.models import max_pool_2x2

    x = jax.random.normal(jax.random.PRNGKey(0), (3, size, size, 4), jnp.float64)
    ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")  # noqa: E731
    np.testing.assert_array_equal(max_pool_2x2(x), ref(x))
    g = jax.grad(lambda x: jnp.sum(jnp.sin(max_pool_2x2(x))))(x)
    np.testing.assert_array_equal(g, jax.grad(lambda x: jnp.sum(jnp.sin(ref(x))))(x))
    # ReLU after the pool is the same function as ReLU before it
    np.testing.assert_array_equal(nn.relu(max_pool_2x2(x)), max_pool_2x2(nn.relu(x)))


@pytest.mark.parametrize("hw", [(1, 1), (3, 3), (7, 7), (8, 8), (6, 5)])
def test_winograd_conv3x3_is_lax_conv_with_correct_derivatives_to_third_order(hw):
    from jax.test_util import check_grads

    from metajax._src.kernels import _wino_in, _wino_in_t_op, _wino_out, _wino_out_t_op
    from metajax.models import winograd_conv3x3

    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(k1, (2, *hw, 3), jnp.float64)
    w = jax.random.normal(k2, (3, 3, 3, 4), jnp.float64)
    dn = ("NHWC", "HWIO", "NHWC")
    lax_conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)  # noqa: E731
    np.testing.assert_allclose(winograd_conv3x3(x, w), lax_conv(x, w), rtol=1e-12, atol=1e-12)
    # the custom VJPs are the transforms' adjoints: <T a, b> = <a, T^T b>
    v = jax.random.normal(k3, _wino_in(x, hw).shape, jnp.float64)
    np.testing.assert_allclose(jnp.vdot(_wino_in(x, hw), v), jnp.vdot(x, _wino_in_t_op(v, hw)), rtol=1e-12)
    m = jax.random.normal(k4, (*v.shape[:2], 4), jnp.float64)
    g = lax_conv(x, w)
    np.testing.assert_allclose(jnp.vdot(_wino_out(m, 2, hw), g), jnp.vdot(m, _wino_out_t_op(g, 2, hw)), rtol=1e-12)
    check_grads(winograd_conv3x3, (x, w), order=3, modes=["rev"])
    # batched per-task weights (vmap) give the plain convolution's gradients
    ws = jnp.stack([w, -2 * w])

    def grads(conv):
        return jax.vmap(jax.grad(lambda w: jnp.sum(conv(x, w) ** 3)))(ws)

    np.testing.assert_allclose(grads(winograd_conv3x3), grads(lax_conv), rtol=1e-10)
    # float32: rounding comparable to a direct convolution's
    x32, w32 = x.astype(jnp.float32), w.astype(jnp.float32)
    err = jnp.max(jnp.abs(winograd_conv3x3(x32, w32) - lax_conv(x, w))) / jnp.max(jnp.abs(lax_conv(x, w)))
    assert float(err) < 1e-5


def test_winograd_layer_chooses_per_call_by_channels_size_and_batch():
    from metajax._src.models import PatchConv3x3, WinogradConv3x3

    def uses_winograd(x):
        layer = WinogradConv3x3(8)
        params = layer.init(jax.random.PRNGKey(0), x)
        jaxpr = jax.make_jaxpr(layer.apply)(params, x)
        # Winograd's 16 batched (tiles x C) @ (C x F) matmuls: a dot_general with a batch dimension of 16
        return any(e.primitive.name == "dot_general" and e.params["dimension_numbers"][1][0] for e in jaxpr.jaxpr.eqns)

    key = jax.random.PRNGKey(1)
    assert uses_winograd(jax.random.normal(key, (16, 8, 8, 8)))
    assert not uses_winograd(jax.random.normal(key, (15, 8, 8, 8)))  # a 5-way support set: im2col
    assert not uses_winograd(jax.random.normal(key, (16, 8, 8, 4)))  # too few input channels
    assert not uses_winograd(jax.random.normal(key, (16, 7, 7, 8)))  # too small
    # either way the layer computes the same convolution as im2col with the same parameters
    x = jax.random.normal(key, (16, 8, 8, 8))
    for n in (16, 15):
        params = WinogradConv3x3(8).init(jax.random.PRNGKey(0), x[:n])
        np.testing.assert_allclose(
            WinogradConv3x3(8).apply(params, x[:n]), PatchConv3x3(8).apply(params, x[:n]), rtol=1e-10, atol=1e-10
        )


def _vmap_vs_loop_gap(conv, dtype):
    """Largest |vmap - loop| of a post-one-SGD-step loss over 2 tasks (per-task kernels inside a scan)."""
    model = conv4(ways=3, filters=8, image_size=16, conv=conv, closed_form=False)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), model.init(jax.random.PRNGKey(3)))
    n = 16 if conv == "winograd" else 3  # Winograd applies to batches of >= 16 images
    xs = jax.random.normal(jax.random.PRNGKey(4), (2, n, 16, 16, 1), dtype)
    loss = lambda p, x: cross_entropy_loss(model.apply)(p, (x, jnp.arange(n) % 3))[0]  # noqa: E731

    def adapted_loss(x):
        def step(p, _):
            g = jax.grad(loss)(p, x)
            return jax.tree_util.tree_map(lambda a, b: a - 0.1 * b, p, g), None

        return loss(jax.lax.scan(step, params, jnp.arange(1))[0], x)

    loop = jnp.stack([jax.jit(adapted_loss)(x) for x in xs])
    return float(jnp.max(jnp.abs(jax.jit(jax.vmap(adapted_loss))(xs) - loop)))


@pytest.mark.parametrize("conv", ["patches", "lax_vjp", "winograd"])
def test_vmapped_tasks_match_a_loop_in_float64(conv):
    assert _vmap_vs_loop_gap(conv, jnp.float64) < 1e-12


XLA_CPU_GROUPED_CONV_BUG = pytest.mark.xfail(
    jax.default_backend() == "cpu",
    strict=True,
    raises=AssertionError,
    reason="XLA:CPU (jaxlib 0.10.2): vmapped lax.conv with per-task kernels (grouped convolutions) and the "
    "plain-formula reshaped max-pool give a wrong gradient; with the closed-form corner pool the same vmap is right "
    "(the strategy test below), so the pool miscompile may be the cause rather than grouped convolutions",
)


XLA_CPU_POOL_GRADIENT_BUG = pytest.mark.xfail(
    jax.default_backend() == "cpu",
    strict=True,
    raises=AssertionError,
    reason="XLA:CPU (jaxlib 0.10.2) miscompiles the gradient of a 2x2 max-pool after batch normalisation when a "
    "channel row is >= 384 bytes (float64 >= 48 channels, float32 >= 128); right with "
    "--xla_disable_hlo_passes=algsimp",
)


@XLA_CPU_POOL_GRADIENT_BUG
@pytest.mark.parametrize("dtype,channels", [(jnp.float64, 64), (jnp.float32, 128)])
def test_jitted_pool_after_normalisation_gradient_matches_eager(dtype, channels):
    # strict: when a jaxlib fixes this the test XPASSes and fails, so the known-issue note in README.md can go
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 2, 2, channels), dtype)

    def f(x):
        m = x.mean((0, 1, 2), keepdims=True)
        v = ((x - m) ** 2).mean((0, 1, 2), keepdims=True)
        return jnp.sum(jnp.sin(max_pool_2x2((x - m) / jnp.sqrt(v + 1e-5))))

    eager, jitted = jax.grad(f)(x), jax.jit(jax.grad(f))(x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(eager))))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_jitted_maml_meta_gradient_matches_eager_at_conv4_64_width(dtype):
    """Exact MAML through the default (closed-form) Conv4-64 under jit is right at the Omniglot width.

    20x20 inputs pool 20 -> 10 -> 5 -> 2 -> 1, an odd pool input like Omniglot's 7 and 3: with the earlier reshaped
    ReLU-max-pool gradient XLA:CPU's compiled meta-gradient was off by ~25 % (float32) or NaN (float64) here.
    """
    model = conv4(ways=5, filters=64, image_size=20)
    learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 1, inner_lr=0.1, has_aux=True, task_chunk=1)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), model.init(jax.random.PRNGKey(0)))
    tasks = jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if a.dtype == jnp.float64 else a,
        image_tasks(jax.random.PRNGKey(1), 1, ways=5, shots=1, query=4, size=20),  # 20 query images: Winograd
    )
    lowered = jax.jit(learner.meta_grad).lower(params, tasks)
    jitted = ravel_pytree(lowered.compile()(params, tasks)[0])[0]
    # the reference: the same program compiled without XLA's algebraic simplifier, the pass that miscompiled
    # the earlier pool (it agreed with op-by-op execution, which takes minutes here)
    reference = ravel_pytree(lowered.compile(compiler_options={"xla_disable_hlo_passes": "algsimp"})(params, tasks)[0])[
        0
    ]
    assert bool(jnp.all(jnp.isfinite(jitted)))
    tol = 1e-4 if dtype == jnp.float32 else 1e-10
    assert float(jnp.linalg.norm(jitted - reference) / jnp.linalg.norm(reference)) < tol


@pytest.mark.parametrize("dtype,channels,size", [(jnp.float32, 64, 5), (jnp.float32, 128, 2), (jnp.float64, 64, 5)])
def test_relu_max_pool_second_order_under_jit_matches_eager(dtype, channels, size):
    from metajax.models import relu_max_pool_2x2

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x = jnp.round(2 * jax.random.normal(k1, (5, size, size, channels), dtype)) / 2  # with ties
    w = 0.2 * jax.random.normal(k2, (channels, channels), dtype)

    def f(w):
        h = x @ w
        m = h.mean((0, 1, 2), keepdims=True)
        v = ((h - m) ** 2).mean((0, 1, 2), keepdims=True)
        return jnp.sum(jnp.sin(relu_max_pool_2x2((h - m) / jnp.sqrt(v + 1e-5))))

    def meta(w):
        return f(w - 0.5 * jax.grad(f)(w))

    eager, jitted = jax.grad(meta)(w), jax.jit(jax.grad(meta))(w)
    tol = 1e-4 if dtype == jnp.float32 else 1e-10
    assert float(jnp.max(jnp.abs(jitted - eager)) / jnp.max(jnp.abs(eager))) < tol


@XLA_CPU_GROUPED_CONV_BUG
def test_vmapped_lax_conv_tasks_match_a_loop_in_float64():
    # strict: when a jaxlib fixes this the test XPASSes and fails, so the warning in conv4's docstring can go
    assert _vmap_vs_loop_gap("xla", jnp.float64) < 1e-12


@functools.cache
def _strategy_meta_grad(conv, task_chunk, closed_form, filters, query):
    """Exact MAML (k = 2) meta-gradient of a float32 Conv4 on three fixed tasks under one strategy."""
    model = conv4(ways=3, filters=filters, image_size=16, conv=conv, closed_form=closed_form)
    learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 2, inner_lr=0.4, has_aux=True, task_chunk=task_chunk)
    tasks = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32) if a.dtype == jnp.float64 else a,
        image_tasks(jax.random.PRNGKey(5), 3, query=query),
    )
    return jax.jit(learner.meta_grad)(model.init(jax.random.PRNGKey(0)), tasks)[0]


@pytest.mark.parametrize(
    "conv,task_chunk,closed_form",
    [
        ("patches", None, True),
        ("lax_vjp", 1, True),
        ("lax_vjp", None, True),
        ("patches", 2, False),
        ("winograd", 1, True),
        ("winograd", None, True),
        ("xla", None, True),  # right since the corner pool (48aae20); it was a strict xfail before
    ],
)
def test_every_strategy_gives_the_reference_maml_meta_gradient_in_float32(conv, task_chunk, closed_form):
    """Exact MAML (k = 2) on a Conv4 in float32: each strategy against plain autodiff of lax.conv, map over tasks."""

    filters = 8 if conv == "winograd" else 4  # 8: the second block is the one "winograd" transforms
    query = 6 if conv == "winograd" else 2  # winograd: 18 query images take Winograd, the 3-image support im2col
    want = session_shared(  # computed once per shape and session
        f"maml_strategy_reference_{filters}_{query}", lambda: _strategy_meta_grad("xla", 1, False, filters, query)
    )
    want = ravel_pytree(want)[0]
    got = ravel_pytree(_strategy_meta_grad(conv, task_chunk, closed_form, filters, query))[0]
    assert got.dtype == jnp.float32
    assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) < 2e-5


def _strided_reference(params, x, eps=1e-5):
    """The stride-2 Conv4 written out with lax.conv: conv (stride 2, SAME), batch norm on the batch, ReLU."""
    p = params["params"]
    for i in range(4):
        k, b = p[f"Conv_{i}"]["kernel"], p[f"Conv_{i}"]["bias"]
        x = jax.lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = x + b.reshape(1, 1, 1, -1)
        bn = p[f"RefBatchNorm_{i}"]
        mean, var = x.mean((0, 1, 2), keepdims=True), x.var((0, 1, 2), keepdims=True)
        x = (x - mean) / jnp.sqrt(var + eps)
        x = jax.nn.relu(x * bn["scale"].reshape(1, 1, 1, -1) + bn["bias"].reshape(1, 1, 1, -1))
    x = x.mean((1, 2))
    return x @ p["head"]["kernel"] + p["head"]["bias"].reshape(1, -1)


def test_strided_conv4_is_the_reference_network_in_float64():
    """downsample='stride' (the MAML authors' Omniglot network): same parameter shapes as the pooled one,
    outputs equal to the network written out with lax.conv, and its MAML meta-gradient the same with the
    closed-form and the plain batch norm."""
    pooled, strided = (
        conv4(ways=3, filters=4, image_size=16),
        conv4(ways=3, filters=4, image_size=16, downsample="stride"),
    )
    params = f64(strided.init(jax.random.PRNGKey(1)))
    assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(
        jnp.shape, pooled.init(jax.random.PRNGKey(1))
    )
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 16, 16, 1), jnp.float64)
    np.testing.assert_allclose(strided.apply(params, x), _strided_reference(params, x), rtol=1e-12, atol=1e-12)
    tasks = image_tasks(jax.random.PRNGKey(3))
    grads = []
    for closed_form in (True, False):
        m = conv4(ways=3, filters=4, image_size=16, downsample="stride", closed_form=closed_form)
        learner = mj.maml(cross_entropy_loss(m.apply), "sgd", 1, inner_lr=0.1, has_aux=True)
        grads.append(ravel_pytree(jax.jit(learner.meta_grad)(params, tasks)[0])[0])
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="downsample must be one of"):
        conv4(downsample="avg")
    with pytest.raises(ValueError, match="conv='winograd' has no stride-2 form"):
        conv4(downsample="stride", conv="winograd")


@pytest.mark.slow
def test_conv4_64_maml_meta_gradient_matches_an_op_by_op_reference_in_float64():
    """The Conv4-64 exact-MAML meta-gradient of every convolution implementation (jitted, closed-form batch norm
    and pool) against one computed op by op (``jax.disable_jit``: no XLA fusion or simplification can touch it)
    with plain autodiff of ``lax.conv`` and the plain-formula batch norm and pool, in float64.

    16x16 inputs, 3-way 1-shot with 6 queries per class: the 18 query images take the Winograd path on the 8x8
    layer. Measured agreement ~3e-15 (relative); ~2.5 min on 2 CPU cores, hence the slow marker.
    """
    tasks = image_tasks(jax.random.PRNGKey(1), 1, ways=3, shots=1, query=6, size=16)

    def meta_grad(conv, closed_form, jit):
        model = conv4(ways=3, filters=64, image_size=16, conv=conv, closed_form=closed_form)
        params = f64(model.init(jax.random.PRNGKey(0)))
        learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 1, inner_lr=0.1, has_aux=True, task_chunk=1)
        if jit:
            return ravel_pytree(jax.jit(learner.meta_grad)(params, tasks)[0])[0]
        with jax.disable_jit():
            return ravel_pytree(learner.meta_grad(params, tasks)[0])[0]

    reference = meta_grad("xla", False, jit=False)
    for conv in ("patches", "winograd", "xla", "lax_vjp"):
        got = meta_grad(conv, True, jit=True)
        err = float(jnp.linalg.norm(got - reference) / jnp.linalg.norm(reference))
        assert err < 1e-12, f"conv={conv!r}: relative error {err:.2e}"
