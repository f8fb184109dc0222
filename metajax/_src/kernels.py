"""Kernels with hand-written gradients: batch norm, 3x3 convolutions and the 2x2 ReLU-max-pool.

Pure JAX functions (no Flax) used by the models of :mod:`metajax._src.models`.
Each has a ``jax.custom_vjp`` (or ``custom_jvp``) whose backward pass is
itself differentiable, so exact MAML differentiates through it to any order;
tests/test_models.py checks every one against plain autodiff of the
``lax`` formula to second order.

* :func:`batch_norm`: batch normalisation over (batch, H, W) with the
  statistics of the first ``num_ref`` examples, closed-form gradient.
* :func:`im2col_conv3x3`: a 3x3 SAME convolution as nine shifted slices and
  one matmul; :func:`conv_s1`: ``lax.conv`` whose gradients are canonical
  convolutions; :func:`winograd_conv3x3`: Winograd F(2x2, 3x3).
* :func:`relu_max_pool_2x2` and :func:`max_pool_2x2`: 2x2 pooling without
  ``select_and_scatter`` in the gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def check_float_input(x: jax.Array, argname: str = "x", what: str = "this convolution") -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point array (checked at trace time: dtypes are static).

    Integer images (uint8 pixels) would make the kernels cast their float weights to integers and return
    garbage; the error says how to convert them.
    """
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{argname}: {what} expects floating-point inputs, got dtype {dtype}. Convert images first, e.g. "
            f"{argname}.astype(jnp.float32) / 255 for uint8 pixels."
        )


def _accumulate(x):
    """``x`` in at least float32: batch-norm statistics and sums of 16-bit activations are taken in float32."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _bn_stats(x, num_ref, epsilon):
    # per-channel mean and rsqrt(var + eps) in at least float32, kept broadcastable against x
    x = _accumulate(x)
    ref = x if num_ref is None else x[:num_ref]
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(ref, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(ref - mean), axis=axes, keepdims=True)
    return mean, jax.lax.rsqrt(var + epsilon)


def _per_channel(v, ndim):
    return v.reshape((1,) * (ndim - 1) + (-1,))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, num_ref: int | None, epsilon: float) -> jax.Array:
    """Per-channel batch norm of ``x`` (last axis = channels) with the first ``num_ref`` rows' statistics.

    ``y = (x - mean) * rsqrt(var + epsilon) * scale + bias`` with ``mean`` and
    (biased) ``var`` over all axes but the last of ``x[:num_ref]`` (all of
    ``x`` if ``num_ref`` is None). The value is what the formula gives; the
    custom VJP is the closed-form gradient, which needs two per-channel
    reductions and one elementwise pass where autodiff of the formula makes
    several passes over the activations (the largest tensors of a Conv4 step):
    with ``r = rsqrt(var + eps)``, ``xhat = (x - mean) r``, ``m = num_ref``
    rows times the spatial size,

        dx = r scale g - [row < num_ref] (r scale / m) (sum g + xhat sum(g xhat)),
        dscale = sum(g xhat),  dbias = sum(g).

    The backward pass is ordinary JAX code, so it is differentiated again for
    second-order (exact MAML) gradients. A 16-bit ``x`` (mixed precision) is
    normalised in float32 (statistics, the normalisation and the backward
    pass's sums) and the result returned in ``x``'s dtype; float32 and float64
    inputs are computed in their own dtype.
    """
    return bn_formula(x, scale, bias, num_ref, epsilon)


def bn_formula(x, scale, bias, num_ref, epsilon):
    mean, rstd = _bn_stats(x, num_ref, epsilon)
    y = (_accumulate(x) - mean) * (rstd * _per_channel(scale, x.ndim)) + _per_channel(bias, x.ndim)
    return y.astype(x.dtype)


def _bn_fwd(x, scale, bias, num_ref, epsilon):
    mean, rstd = _bn_stats(x, num_ref, epsilon)
    xhat = (_accumulate(x) - mean) * rstd
    y = xhat * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    return y.astype(x.dtype), (xhat, rstd, scale)


def _bn_bwd(num_ref, epsilon, res, g):
    del epsilon
    xhat, rstd, scale = res
    dtype = g.dtype
    g = _accumulate(g)
    axes = tuple(range(g.ndim - 1))
    dbias = jnp.sum(g, axis=axes, keepdims=True)
    dscale = jnp.sum(g * xhat, axis=axes, keepdims=True)
    rows = g.shape[0] if num_ref is None else num_ref
    m = rows * (g.size // (g.shape[0] * g.shape[-1]))
    rs = rstd * _per_channel(scale, g.ndim)
    correction = (rs / m) * (dbias + xhat * dscale)
    if num_ref is None:
        dx = rs * g - correction
    else:
        in_ref = (jnp.arange(g.shape[0]) < num_ref).reshape((-1,) + (1,) * (g.ndim - 1))
        dx = rs * g - jnp.where(in_ref, correction, 0)
    return (
        dx.astype(dtype),
        dscale.reshape(scale.shape).astype(scale.dtype),
        dbias.reshape(scale.shape).astype(scale.dtype),
    )


batch_norm.defvjp(_bn_fwd, _bn_bwd)


def im2col_conv3x3(x, kernel):
    """3x3 SAME convolution as nine shifted slices and one matmul."""
    check_float_input(x, "x", "im2col_conv3x3")
    n, h, w, c = x.shape
    cols = _im2col(x, ((1, 1), (1, 1)), (h, w), (3, 3))
    return (cols @ kernel.reshape(9 * c, kernel.shape[-1])).reshape(n, h, w, kernel.shape[-1])


_DN = ("NHWC", "HWIO", "NHWC")


def _im2col(x, padding, out_hw, kernel_hw):
    """``(N * OH * OW, KH * KW * C)`` columns of the padded NHWC ``x``: one row per output position."""
    (pt, pb), (pl, pr) = padding
    (oh, ow), (kh, kw) = out_hw, kernel_hw
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = jnp.concatenate([xp[:, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)], axis=-1)
    return cols.reshape(x.shape[0] * oh * ow, kh * kw * x.shape[-1])


def _saving_operands(op):
    """The forward rule of a bilinear op ``op(a, b, padding)``: its value, and both operands as residuals."""

    def fwd(a, b, padding):
        return op(a, b, padding), (a, b)

    return fwd


def _lax_conv(x, w, padding):
    return _batch_safe_conv(padding)(x, w)


@functools.cache
def _batch_safe_conv(padding):
    """``lax.conv`` (stride 1, NHWC/HWIO) whose vmap never becomes a grouped convolution.

    JAX batches a convolution with per-example kernels into one grouped
    convolution, which XLA:CPU (jaxlib 0.10.2) miscompiles in some shapes: the
    exact MAML meta-gradient of a 16x16 Conv4 under vmap over tasks came out
    with relative error ~1 (tests/test_models.py). Here a batched kernel runs
    as a loop over the batch (``lax.map``; what ``task_chunk=1`` does anyway),
    and a batched input with a shared kernel folds the batch into the
    examples axis (no grouping).
    """

    @jax.custom_batching.custom_vmap
    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)

    @conv.def_vmap
    def _rule(axis_size, in_batched, x, w):
        x_batched, w_batched = in_batched
        if w_batched:
            if not x_batched:
                x = jnp.broadcast_to(x, (axis_size, *x.shape))
            return jax.lax.map(lambda xw: conv(*xw), (x, w)), True
        b, n = x.shape[0], x.shape[1]
        out = conv(x.reshape(b * n, *x.shape[2:]), w)
        return out.reshape(b, n, *out.shape[1:]), True

    return conv


# Three stride-1 NHWC/HWIO operations close under reverse-mode differentiation:
#   conv_s1(x, w)   y[n,o,f] = sum_{k,c} x[n,o+k-p,c] w[k,c,f]      (the forward convolution)
#   _conv_t(g, w)   x[n,i,c] = sum_{k,f} g[n,i-k+p,f] w[k,c,f]      (its input gradient)
#   _conv_w(x, g)   w[k,c,f] = sum_{n,o} x[n,o+k-p,c] g[n,o,f]      (its weight gradient)
# Each is bilinear and each partial derivative of each is one of the three, so
# every order of reverse-mode derivative is built from them; each is written as
# a canonical convolution with a small (kernel-sized) output or kernel.


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_s1(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """Stride-1 NHWC/HWIO convolution whose derivatives are canonical convolutions.

    ``conv_s1(x, w, ((pt, pb), (pl, pr)))`` equals
    ``lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))``.
    The difference is the backward pass. JAX's transpose rules emit convolutions
    with swapped dimension numbers (the weight gradient contracts the batch
    axis), which XLA:CPU runs up to 60x slower inside a loop over tasks than
    outside one (``benchmarks/conv_in_loop.py``). Here the input gradient is a
    convolution with the flipped, in/out-swapped kernel and the weight gradient
    a convolution of the transposed input (batch as features) with the
    transposed output cotangent; their own derivatives are again one of these
    three operations, so second- and higher-order reverse-mode derivatives (exact
    MAML) stay in the same form. Forward-mode AD (``jax.jvp``) is not available
    through a custom VJP; metajax's iMAML uses reverse-mode Hessian-vector
    products, so it works with this convolution.
    """
    return _lax_conv(x, w, padding)


def _conv_s1_bwd(padding, res, g):
    x, w = res
    return _conv_t(g, w, padding), _conv_w(x, g, padding)


conv_s1.defvjp(_saving_operands(conv_s1), _conv_s1_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_t(g, w, padding):
    kh, kw = w.shape[0], w.shape[1]
    (pt, pb), (pl, pr) = padding
    return _lax_conv(g, jnp.flip(w, (0, 1)).swapaxes(2, 3), ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)))


def _conv_t_bwd(padding, res, d):
    g, w = res
    return conv_s1(d, w, padding), _conv_w(d, g, padding)


_conv_t.defvjp(_saving_operands(_conv_t), _conv_t_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_w(x, g, padding):
    # As a convolution (x^T with g^T as a kernel the size of the output) XLA:CPU
    # is slow: a large kernel with a tiny output. As im2col, one matmul that
    # contracts over all (example, position) pairs; ~2x faster for the Conv4
    # layers (benchmarks/README.md).
    (pt, pb), (pl, pr) = padding
    n, h, w, c = x.shape
    oh, ow, f = g.shape[1], g.shape[2], g.shape[3]
    kh, kw = h + pt + pb - oh + 1, w + pl + pr - ow + 1
    cols = _im2col(x, padding, (oh, ow), (kh, kw))
    dw = jax.lax.dot_general(cols, g.reshape(n * oh * ow, f), (((0,), (0,)), ((), ())))
    return dw.reshape(kh, kw, c, f)


def _conv_w_bwd(padding, res, d):
    x, g = res
    return _conv_t(g, d, padding), conv_s1(x, d, padding)


_conv_w.defvjp(_saving_operands(_conv_w), _conv_w_bwd)


# ---------------------------------------------------------------------------
# Winograd F(2x2, 3x3) convolution (Lavin & Gray 2016): 16 batched matmuls of
# (tiles x C) @ (C x F) replace the (positions x 9C) @ (9C x F) im2col matmul,
# 2.25x fewer multiplications. The two linear tile transforms get custom VJPs
# that are each other's transposes, so every order of reverse-mode derivative
# is again these transforms and batched matmuls (autodiff's own transposes of
# the strided stacks and slices ran 3-30x slower than the forward transforms on
# XLA:CPU). Writing the output transform's transpose as one (16 x 4) matmul of
# the four output phases was no faster and, inside the Conv4 gradient,
# miscompiled by XLA:CPU's algebraic simplifier (jaxlib 0.10.2: jit and eager
# disagreed, right with --xla_disable_hlo_passes=algsimp), so it stays adds.
# ---------------------------------------------------------------------------

# Y = A^T [(G g G^T) * (B^T d B)] A for a 4x4 input tile d and a 3x3 kernel g.
_WINO_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINO_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_WINO_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def _combine(mat, terms):
    """``[sum_j mat[i][j] * terms[j] for i]`` for a small integer matrix, as adds and subtracts."""
    out = []
    for row in mat:
        acc = None
        for coef, t in zip(row, terms, strict=True):
            if coef == 0:
                continue
            if acc is None:
                acc = t if coef == 1 else -t
            else:
                acc = acc + t if coef == 1 else acc - t
        out.append(acc)
    return out


_WINO_B = tuple(zip(*_WINO_BT, strict=True))
_WINO_A = tuple(zip(*_WINO_AT, strict=True))


def _tiles(hw):
    return -(-hw[0] // 2), -(-hw[1] // 2)


def _transpose_pair(fn, fn_t, nondiff_argnums):
    """Two linear maps ``fn(x, *static)`` and ``fn_t(y, *static)``, each with the other as its VJP.

    Every derivative order then stays in these two forms.
    """
    op = jax.custom_vjp(fn, nondiff_argnums=nondiff_argnums)
    op_t = jax.custom_vjp(fn_t, nondiff_argnums=nondiff_argnums)

    def define(this, other):
        def fwd(x, *static):  # linear: nothing to save
            return this(x, *static), None

        def bwd(*args):  # (*static, residuals, cotangent)
            *static, _, g = args
            return (other(g, *static),)

        this.defvjp(fwd, bwd)

    define(op, op_t)
    define(op_t, op)
    return op, op_t


def _wino_in_raw(x, hw):
    """(N, H, W, C) -> (16, N * TH * TW, C): B^T d B of every 4x4 tile of the SAME-padded input, stride 2."""
    n, h, w, c = x.shape
    th, tw = _tiles(hw)
    xp = jnp.pad(x, ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))
    p = xp.reshape(n, th + 1, 2, tw + 1, 2, c)  # row 2i + a of tile i: block i + a // 2, phase a % 2
    rows = [p[:, a // 2 : a // 2 + th, a % 2] for a in range(4)]  # (N, TH, TW + 1, 2, C)
    out = []
    for r in _combine(_WINO_BT, rows):
        cols = [r[:, :, b // 2 : b // 2 + tw, b % 2] for b in range(4)]  # (N, TH, TW, C)
        out.extend(_combine(_WINO_BT, cols))
    return jnp.stack(out).reshape(16, n * th * tw, c)


def _wino_in_t(v, hw):
    """The transpose of :func:`_wino_in_raw`: (16, N * TH * TW, C) -> (N, H, W, C), overlapping tiles summed."""
    h, w = hw
    th, tw = _tiles(hw)
    c = v.shape[-1]
    n = v.shape[1] // (th * tw)
    v = v.reshape(4, 4, n, th, tw, c)

    def overlap_add(parts, axis):
        # parts[k] belongs at block offset k // 2, phase k % 2, along `axis` (blocks) / `axis + 1` (phase)
        def shift(t, lo):
            pad = [(0, 0)] * t.ndim
            pad[axis] = (lo, 1 - lo)
            return jnp.pad(t, pad)

        return jnp.stack([shift(parts[q], 0) + shift(parts[q + 2], 1) for q in range(2)], axis=axis + 1)

    rows = [overlap_add(_combine(_WINO_B, [v[ap, bp] for bp in range(4)]), axis=2) for ap in range(4)]
    p = overlap_add(_combine(_WINO_B, rows), axis=1)  # (N, TH + 1, 2, TW + 1, 2, C)
    return p.reshape(n, 2 * th + 2, 2 * tw + 2, c)[:, 1 : 1 + h, 1 : 1 + w, :]


_wino_in, _wino_in_t_op = _transpose_pair(_wino_in_raw, _wino_in_t, (1,))


def _wino_out_raw(m, n, hw):
    """(16, N * TH * TW, F) -> (N, H, W, F): A^T M A of every tile, interleaved and cropped to H x W."""
    h, w = hw
    th, tw = _tiles(hw)
    f = m.shape[-1]
    m = m.reshape(4, 4, n, th, tw, f)
    rows = _combine(_WINO_AT, [m[i] for i in range(4)])  # 2 x (4, N, TH, TW, F)
    y = [jnp.stack(_combine(_WINO_AT, [r[j] for j in range(4)]), axis=-2) for r in rows]  # (N, TH, TW, 2, F)
    return jnp.stack(y, axis=2).reshape(n, 2 * th, 2 * tw, f)[:, :h, :w, :]


def _wino_out_t(g, n, hw):
    """The transpose of :func:`_wino_out_raw`: (N, H, W, F) -> (16, N * TH * TW, F)."""
    h, w = hw
    th, tw = _tiles(hw)
    f = g.shape[-1]
    g = jnp.pad(g, ((0, 0), (0, 2 * th - h), (0, 2 * tw - w), (0, 0))).reshape(n, th, 2, tw, 2, f)
    rows = _combine(_WINO_A, [g[:, :, o] for o in range(2)])  # 4 x (N, TH, TW, 2, F)
    out = []
    for r in rows:
        out.extend(_combine(_WINO_A, [r[:, :, :, p] for p in range(2)]))
    return jnp.stack(out).reshape(16, n * th * tw, f)


_wino_out, _wino_out_t_op = _transpose_pair(_wino_out_raw, _wino_out_t, (1, 2))


def winograd_conv3x3(x: jax.Array, w: jax.Array) -> jax.Array:
    """3x3 SAME stride-1 NHWC/HWIO convolution by Winograd F(2x2, 3x3).

    Equals ``lax.conv_general_dilated(x, w, (1, 1), "SAME", ...)`` up to float
    rounding (the transforms add and subtract at most 16 terms; relative error
    ~1e-6 in float32 on the Conv4 layers, tests/test_models.py). Odd sizes are
    padded to whole 2x2 output tiles and cropped.
    """
    check_float_input(x, "x", "winograd_conv3x3")
    n, h, w_, c = x.shape
    g = jnp.asarray(_WINO_G, x.dtype)
    u = jnp.einsum("ai,ijcf,bj->abcf", g, w, g).reshape(16, c, w.shape[-1])
    v = _wino_in(x, (h, w_))
    m = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))
    return _wino_out(m, n, (h, w_))


def max_pool_2x2(x):
    """2x2 max-pool, stride 2, VALID (an odd trailing row/column is dropped), NHWC.

    A reshape and a max-reduction instead of ``reduce_window``: the same values
    and first-order gradients (away from ties), but its gradient is an
    elementwise mask where ``reduce_window``'s is ``select_and_scatter``, which
    XLA:CPU runs ~7x slower (the MAML step went from 3.0 to 2.0 s/it;
    benchmarks/README.md).

    Known issue: XLA:CPU (jaxlib 0.10.2) miscompiles the gradient of this
    reshaped form after batch normalisation in some shapes (wide channel rows;
    second order already at 64 float32 channels), so
    ``conv4(closed_form=False)`` is a reference for small nets only; the
    default :func:`relu_max_pool_2x2` is written differently and is right.
    """
    return _blocks(x).max(axis=(2, 4))


@jax.custom_vjp
def relu_max_pool_2x2(x: jax.Array) -> jax.Array:
    """``relu(max_pool_2x2(x))`` with a one-pass gradient.

    The value and the gradient equal those of the composition under JAX's
    rules (the gradient of a max is split equally among tied maxima; ReLU's
    gradient at 0 is 0): ``dx = where(x == m and m > 0, g / ties, 0)`` with
    ``m`` the window's maximum and ``ties`` the number of elements equal to it.
    Ties are common on Omniglot's flat backgrounds, so the split matters.
    Autodiff of the composition computes the same with separate mask, count,
    divide and select passes over the largest activations.

    Written on the four strided corners of the windows (elementwise maxima;
    the gradient compares the input with the upsampled maximum), not as a
    reduction over a reshaped (N, H/2, 2, W/2, 2, C) view: XLA:CPU (jaxlib
    0.10.2) miscompiles the gradient of the reshaped form after batch
    normalisation in some shapes (exact MAML's meta-gradient on the Omniglot
    Conv4-64 was off by ~25 % in float32 under ``jit``; see
    ``tests/test_models.py`` and README "Known issues").
    """
    return jax.nn.relu(_max4(*_corners(x)))


def _blocks(x):
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, : 2 * h2, : 2 * w2, :].reshape(n, h2, 2, w2, 2, c)


def _corners(x):
    """The four (N, H/2, W/2, C) strided views x[:, a::2, b::2] (a, b in 0, 1) of the 2x2 windows."""
    h2, w2 = x.shape[1] // 2, x.shape[2] // 2
    return [x[:, a : 2 * h2 : 2, b : 2 * w2 : 2, :] for a in (0, 1) for b in (0, 1)]


@jax.custom_jvp
def _max4(a, b, c, d):
    """Elementwise max of four arrays whose derivative splits equally among ties (as ``reduce_max``'s does).

    ``jnp.maximum`` splits a tie in halves at each pairwise step (a three-way
    tie would get 1/4, 1/4, 1/2); higher-order derivatives of
    :func:`relu_max_pool_2x2` differentiate its forward rule, so the split matters there.
    """
    return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


@_max4.defjvp
def _max4_jvp(primals, tangents):
    m = _max4(*primals)
    hits = [p == m for p in primals]
    ties = sum(h.astype(m.dtype) for h in hits)
    tangent = sum(jnp.where(h, t, 0) for h, t in zip(hits, tangents, strict=True)) / ties
    return m, tangent


def _rmp_fwd(x):
    m = _max4(*_corners(x))
    return jax.nn.relu(m), (x, m)


def _rmp_bwd(res, g):
    x, m = res
    share = jnp.where(m > 0, g / _ties(x, m, g.dtype), 0)
    return (_spread(x, m, share),)


def _ties(x, m, dtype):
    """How many of each window's four inputs equal its maximum ``m``."""
    return sum((corner == m).astype(dtype) for corner in _corners(x))


def _spread(x, m, share):
    """The gradient of the pool's input: each input takes its window's ``share`` where it equals the maximum."""
    n, h, w, c = x.shape
    # one full-resolution pass (whole steps 1.02-1.11x faster than with four per-corner masks interleaved by a
    # stack; benchmarks/README.md)
    dx = jnp.where(x[:, : 2 * (h // 2), : 2 * (w // 2), :] == _upsample_2x(m), _upsample_2x(share), 0)
    if dx.shape != x.shape:
        dx = jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    return dx


def _upsample_2x(a):
    """Nearest-neighbour (N, H, W, C) -> (N, 2H, 2W, C): each value fills its 2x2 window."""
    n, h, w, c = a.shape
    return jnp.broadcast_to(a[:, :, None, :, None, :], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)


relu_max_pool_2x2.defvjp(_rmp_fwd, _rmp_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def leaky_relu_max_pool_2x2(x: jax.Array, negative_slope: float = 0.1) -> jax.Array:
    """``leaky_relu(max_pool_2x2(x), negative_slope)`` with a one-pass gradient (the end of a ResNet-12 block).

    Leaky ReLU is increasing, so it commutes with the max-pool and runs on the 4x smaller pooled tensor. Value
    and gradient equal those of the composition under JAX's rules: a window's gradient is split equally among
    its tied maxima and scaled by ``negative_slope`` where the maximum is negative (``jax.nn.leaky_relu``'s
    gradient at 0 is 1). Written on the windows' four strided corners like :func:`relu_max_pool_2x2`, whose
    notes apply.

    Args:
      x: activations, shape (N, H, W, C); an odd trailing row or column is dropped (VALID pooling).
      negative_slope: the slope below zero (0.1 in the ResNet-12 of Lee et al. 2019).

    Returns:
      The pooled activations, shape (N, H // 2, W // 2, C).

    >>> import jax.numpy as jnp
    >>> leaky_relu_max_pool_2x2(jnp.array([-4.0, -2.0, -8.0, -6.0]).reshape(1, 2, 2, 1), 0.1).ravel()
    Array([-0.2], dtype=float32)
    """
    return jax.nn.leaky_relu(_max4(*_corners(x)), negative_slope)


def _lrmp_fwd(x, negative_slope):
    m = _max4(*_corners(x))
    return jax.nn.leaky_relu(m, negative_slope), (x, m)


def _lrmp_bwd(negative_slope, res, g):
    x, m = res
    share = jnp.where(m >= 0, g, negative_slope * g) / _ties(x, m, g.dtype)
    return (_spread(x, m, share),)


leaky_relu_max_pool_2x2.defvjp(_lrmp_fwd, _lrmp_bwd)
