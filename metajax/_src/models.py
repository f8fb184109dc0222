"""Models: Flax modules used through a pure ``apply``.

The core never imports Flax; this layer turns a Flax module into a
:class:`Model` with ``init(key) -> params`` and a pure
``apply(params, x, reference=None)``.

Batch normalisation policies of :func:`conv4` (no running statistics are kept,
as in the MAML reference implementation):

* transductive (``reference=None``): each call normalises with the statistics
  of the batch it is given. The support and the query batch are evaluated in
  separate calls, so each uses its own statistics; a query prediction then
  depends on the other query examples.
* support (``reference=support_x``, non-transductive): every BatchNorm layer uses the
  statistics of the reference (support) batch's activations, so each query
  example is normalised on its own against support statistics: its prediction
  depends only on itself and the support set, exactly as if the query examples
  were scored one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax._src.base import Params
from metajax._src.kernels import (
    batch_norm,
    bn_formula,
    check_float_input,
    conv_s1,
    im2col_conv3x3,
    max_pool_2x2,
    relu_max_pool_2x2,
    winograd_conv3x3,
)


class Model(NamedTuple):
    """A pure model: ``init(key) -> params``, ``apply(params, x, reference=None)``.

    Attributes:
      init: parameter initialiser.
      apply: forward pass over a leading batch axis.
      input_shape: the per-example input shape.
      module: the underlying Flax module, for inspection (``None`` for a model written as plain functions).
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., jax.Array]
    input_shape: tuple[int, ...]
    module: Any = None


COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def check_compute_dtype(value: Any, name: str = "model.compute_dtype") -> str:
    """``value`` if it is one of :data:`COMPUTE_DTYPES`, else a ``ValueError`` naming ``name``."""
    if not isinstance(value, str) or value not in COMPUTE_DTYPES:
        raise ValueError(f"{name} must be one of {COMPUTE_DTYPES}, got {value!r}.")
    return value


def cast(tree: Any, to: Any) -> Any:
    """Every floating-point leaf of ``tree`` cast to ``to`` (integer leaves, e.g. labels, untouched)."""
    return jax.tree.map(lambda a: a.astype(to) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree)


def with_compute_dtype(model: Model, compute_dtype: str = "float32") -> Model:
    """Mixed precision: ``model.apply`` computed in ``compute_dtype``, everything around it in float32.

    The returned model's ``apply`` casts the parameters and the inputs to ``compute_dtype`` (``"bfloat16"`` or
    ``"float16"``) and its outputs back to float32. The parameters, their gradients (a cast's gradient is cast
    back), the inner and outer optimisers' states and updates, and the loss (computed on float32 outputs) stay in
    float32, and exact meta-gradients differentiate through the casts. :func:`batch_norm` takes its statistics
    and sums in float32 whatever its input's dtype. ``"float32"`` returns ``model`` itself: the default path is
    unchanged, bit for bit.

    >>> import jax, jax.numpy as jnp
    >>> m = with_compute_dtype(mlp(), "bfloat16")
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jnp.ones((3, 1))).dtype
    dtype('float32')
    """
    check_compute_dtype(compute_dtype, "compute_dtype")
    if compute_dtype == "float32":
        return model
    dtype = jnp.dtype(compute_dtype)

    def apply(params, x, reference=None):
        if reference is None:
            out = model.apply(cast(params, dtype), cast(x, dtype))
        else:
            out = model.apply(cast(params, dtype), cast(x, dtype), cast(reference, dtype))
        return cast(out, jnp.float32)

    return Model(model.init, apply, model.input_shape, model.module)


def from_linen(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    reference_norm: bool = False,
    init_batch: int = 1,
    name: str | None = None,
) -> Model:
    """Wrap any Flax Linen module: ``init(key)``, ``apply(params, x, reference=None)``.

    The one adapter from a Linen module to a :class:`Model` (the built-in MLP, Conv4 and ResNet-12 use it).

    Args:
      module: a Linen module called as ``module(x)``.
      input_shape: the per-example input shape (used by ``init``).
      reference_norm: the module takes ``num_ref=n``: its first ``n`` examples are a reference batch whose
        statistics normalise the rest (non-transductive batch norm); ``apply(params, x, reference)`` prepends
        ``reference`` and returns the outputs of ``x``. Otherwise ``reference`` is ignored.
      init_batch: examples in the dummy batch ``init`` traces with.
      name: the model's name in error messages; with it, ``x`` and ``reference`` must be floating-point
        arrays (an integer image is refused with a clear error).

    >>> m = from_linen(nn.Dense(3), (2,))
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jnp.ones((4, 2))).shape
    (4, 3)
    """
    shape = tuple(input_shape)

    def init(key):
        return module.init(key, jnp.zeros((init_batch, *shape)))

    def apply(params, x, reference=None):
        if name is not None:
            check_float_input(x, "x", name)
        if reference is None or not reference_norm:
            return module.apply(params, x)
        if name is not None:
            check_float_input(reference, "reference", name)
        n = reference.shape[0]
        return module.apply(params, jnp.concatenate([reference, x], axis=0), num_ref=n)[n:]

    return Model(init, apply, shape, module)


def from_nnx(factory: Callable[[Any], Any], input_shape: tuple[int, ...]) -> Model:
    """Wrap a Flax NNX module as a pure model.

    NNX modules hold their parameters; metajax needs them as a pytree it can
    adapt per task. ``init(key)`` builds ``factory(nnx.Rngs(key))`` and returns
    its ``nnx.Param`` variables as a plain nested dict; ``apply(params, x)``
    merges such a dict back into the module's graph and calls it. Other state
    (e.g. batch-norm running averages) is kept constant.

    Args:
      factory: ``factory(rngs) -> nnx.Module``.
      input_shape: the per-example input shape.

    >>> from flax import nnx
    >>> m = from_nnx(lambda rngs: nnx.Linear(2, 3, rngs=rngs), (2,))
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jnp.ones((4, 2))).shape
    (4, 3)
    """
    from flax import nnx

    # The graph, the Param template and the non-Param state from one instance;
    # only the Param values change per call.
    graphdef, template, rest = nnx.split(factory(nnx.Rngs(0)), nnx.Param, ...)

    def init(key):
        return nnx.to_pure_dict(nnx.split(factory(nnx.Rngs(key)), nnx.Param, ...)[1])

    def apply(params, x, reference=None):
        del reference
        state = jax.tree_util.tree_map(lambda v: v, template)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state, rest)(x)

    return Model(init, apply, tuple(input_shape), graphdef)


class MLPModule(nn.Module):
    """Fully connected ReLU network."""

    hidden: Sequence[int] = (40, 40)
    out: int = 1

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


def mlp(in_features: int = 1, hidden: Sequence[int] = (40, 40), out: int = 1, compute_dtype: str = "float32") -> Model:
    """The sinusoid network of the MAML paper: 1-40-40-1 with ReLU by default.

    ``compute_dtype``: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"`` (mixed precision, see
    :func:`with_compute_dtype`).

    >>> import jax
    >>> m = mlp()
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jax.numpy.zeros((5, 1))).shape
    (5, 1)
    """
    module = MLPModule(hidden=tuple(hidden), out=out)

    # no batch statistics: the batch-norm policy (reference) does not matter
    return with_compute_dtype(from_linen(module, (in_features,)), compute_dtype)


class RefBatchNorm(nn.Module):
    """Batch norm over (batch, H, W) using the first ``num_ref`` examples' statistics.

    ``num_ref=None`` uses the whole batch (transductive). Learnable per-channel
    scale and offset; no running averages. ``closed_form=True`` computes it
    with :func:`batch_norm` (closed-form gradient), ``False`` by autodiff of
    the formula (same values; kept for comparison and benchmarks).
    """

    epsilon: float = 1e-5
    closed_form: bool = True

    @nn.compact
    def __call__(self, x, num_ref=None):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        norm = batch_norm if self.closed_form else bn_formula  # the formula alone: differentiated by autodiff
        return norm(x, scale.astype(x.dtype), bias.astype(x.dtype), num_ref, self.epsilon)


class PatchConv3x3(nn.Module):
    """3x3 SAME convolution as nine shifted slices and one matmul (im2col).

    Same parameters (``kernel`` of shape (3, 3, C, F), ``bias``) and the same
    result as ``nn.Conv(F, (3, 3), padding="SAME")``. On XLA:CPU its forward,
    backward and second-order passes are all matmuls, slices and pads, which
    run ~20x faster than XLA:CPU's convolution kernels on the MAML workload
    (benchmarks/README.md); on GPU/TPU the native convolution is better.
    """

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.features), jnp.float32)
        return self.add_bias(im2col_conv3x3(x, kernel.astype(x.dtype)))

    def add_bias(self, y):
        if not self.use_bias:
            return y
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y + bias.astype(y.dtype).reshape(1, 1, 1, self.features)


class WinogradConv3x3(PatchConv3x3):
    """3x3 SAME convolution by Winograd F(2x2, 3x3) (:func:`winograd_conv3x3`).

    Same parameters and result (to float rounding) as ``nn.Conv(F, (3, 3),
    padding="SAME")``. Layers with fewer than ``min_channels`` input channels
    (the image layer), outputs smaller than ``min_size`` or batches of fewer
    than ``min_batch`` images use the im2col matmul of :class:`PatchConv3x3`
    instead: a 16-way transform of a 1-channel input, of tiles mostly padding,
    or of a 5-image support set costs more than it saves. The choice is per
    call (shapes are static), so one layer can take Winograd on the 75-image
    query and im2col on the 5-image support: that made exact MAML 1.01x,
    1.04x and 1.10x faster at k = 1, 5 and 50 than Winograd everywhere,
    compiling ~1 s sooner (benchmarks/README.md).
    """

    min_channels: int = 8
    min_size: int = 8
    min_batch: int = 16

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.features), jnp.float32)
        use_winograd = c >= self.min_channels and min(x.shape[1:3]) >= self.min_size and x.shape[0] >= self.min_batch
        return self.add_bias((winograd_conv3x3 if use_winograd else im2col_conv3x3)(x, kernel.astype(x.dtype)))


class VJPConv3x3(PatchConv3x3):
    """3x3 SAME convolution through :func:`conv_s1` (canonical-convolution gradients).

    Same parameters and result as ``nn.Conv(F, (3, 3), padding="SAME")``.
    """

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.features), jnp.float32)
        check_float_input(x, "x", "VJPConv3x3")
        return self.add_bias(conv_s1(x, kernel.astype(x.dtype), ((1, 1), (1, 1))))


CONV_IMPLS = ("auto", "patches", "winograd", "xla", "lax_vjp")


def resolve_conv_impl(conv: str) -> str:
    """``"auto"`` is ``"winograd"`` on CPU and ``"xla"`` (cuDNN and friends) elsewhere.

    On the Omniglot workload on CPU, ``"winograd"`` (Winograd F(2x2, 3x3) on
    layers with >= 8 input channels and >= 8x8 outputs, im2col elsewhere) was
    1.06-1.30x faster per step than ``"patches"`` (MAML, FOMAML and Reptile at
    k = 1 and 5), compiles ~1-1.5 s longer and holds 50-150 MB more; beside
    learn2learn (with the per-call batch threshold of :class:`WinogradConv3x3`)
    its cached-step peak memory was 1.15-1.25x learn2learn's for MAML and
    FOMAML. ``"lax_vjp"`` is ~1.2x slower than ``"patches"`` for MAML
    and FOMAML on CPU but ~1.2x faster for Reptile, whose 75-image query pass
    is forward-only (benchmarks/README.md). On GPU/TPU the native
    convolutions are the tuned ones.
    """
    if conv not in CONV_IMPLS:
        raise ValueError(f"conv must be one of {CONV_IMPLS}, got {conv!r}.")
    if conv == "auto":
        return "winograd" if jax.default_backend() == "cpu" else "xla"
    return conv


def conv3x3_layer(conv: str, filters: int, name: str, use_bias: bool = True) -> nn.Module:
    """The 3x3 SAME convolution layer of a resolved implementation (``conv`` from :func:`resolve_conv_impl`)."""
    if conv == "patches":
        return PatchConv3x3(filters, use_bias, name=name)
    if conv == "winograd":
        return WinogradConv3x3(filters, use_bias, name=name)
    if conv == "lax_vjp":
        return VJPConv3x3(filters, use_bias, name=name)
    return nn.Conv(filters, (3, 3), padding="SAME", use_bias=use_bias, name=name)


DOWNSAMPLING = ("pool", "stride")


class Conv4Module(nn.Module):
    """Four blocks of 3x3 conv (SAME), batch norm, 2x2 max-pool and ReLU, then a linear head.

    ``downsample="stride"``: stride-2 convolutions, batch norm and ReLU, no pooling, and the last block's
    features averaged over the image before the head (the MAML reference code's Omniglot network).
    """

    ways: int = 5
    filters: int = 64
    conv: str = "xla"
    closed_form: bool = True
    downsample: str = "pool"

    @nn.compact
    def __call__(self, x, num_ref=None):
        if self.downsample == "stride":
            for i in range(4):
                x = nn.Conv(self.filters, (3, 3), strides=(2, 2), padding="SAME", name=f"Conv_{i}")(x)
                x = nn.relu(RefBatchNorm(closed_form=self.closed_form)(x, num_ref))
            x = jnp.mean(x, axis=(1, 2))
            return nn.Dense(self.ways, name="head")(x)
        for i in range(4):
            x = conv3x3_layer(self.conv, self.filters, f"Conv_{i}")(x)
            x = RefBatchNorm(closed_form=self.closed_form)(x, num_ref)
            # max-pool then ReLU (they commute, ReLU being monotone): ReLU runs
            # on a 4x smaller tensor and the pool's ties are only genuinely
            # equal pre-activations (flat image regions), not every all-zero
            # ReLU window.
            if self.closed_form:
                x = relu_max_pool_2x2(x)
            else:
                x = nn.relu(max_pool_2x2(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.ways, name="head")(x)


def conv4(
    ways: int = 5,
    filters: int = 64,
    image_size: int = 28,
    channels: int = 1,
    conv: str = "auto",
    closed_form: bool = True,
    downsample: str = "pool",
    compute_dtype: str = "float32",
) -> Model:
    """The standard 4-block conv net of MAML (Omniglot 28x28x1, Mini-ImageNet 84x84x3).

    Args:
      ways: number of output classes.
      filters: filters per conv layer (64 for Omniglot, 32 for Mini-ImageNet).
      image_size: input height and width.
      channels: input channels.
      conv: ``"patches"`` (im2col matmuls), ``"winograd"`` (Winograd
        F(2x2, 3x3) matmuls on layers with >= 8 input channels and >= 8x8
        outputs, im2col on the others, :func:`winograd_conv3x3`), ``"xla"``
        (``lax.conv`` with JAX's own gradients), ``"lax_vjp"`` (``lax.conv``
        whose gradients are canonical convolutions, :func:`conv_s1`) or
        ``"auto"`` (winograd on CPU, XLA elsewhere). All have the same parameters and agree to float
        rounding, gradients of every order included. Known issue: XLA:CPU
        (jaxlib 0.10.2) gave wrong MAML meta-gradients for ``"xla"`` with
        tasks vmapped (grouped convolutions) in some shapes; since the
        closed-form pool was rewritten (see :func:`relu_max_pool_2x2`) the
        tested case is right, and the remaining failing one uses the
        reshaped plain-formula pool, so that miscompile may have been the
        cause. ``"lax_vjp"`` never emits grouped convolutions, and
        ``"patches"``, ``"winograd"`` and ``task_chunk=1`` (the CPU
        defaults) are unaffected. tests/test_models.py checks each case.
      closed_form: batch norm and ReLU-max-pool with closed-form gradients
        (:func:`batch_norm`, :func:`relu_max_pool_2x2`; fewer passes over the
        activations, ~15 % faster MAML steps on CPU, benchmarks/README.md);
        ``False`` differentiates the plain formulas. Same values either way
        (but see :func:`max_pool_2x2`: ``False`` is affected by an XLA:CPU
        miscompile at the Conv4-64 widths).
      downsample: ``"pool"`` (2x2 max-pooling after each block, as in the text of Finn, Abbeel & Levine
        2017 and in Vinyals et al. 2016) or ``"stride"`` (stride-2 convolutions and no pooling, the last
        block's features averaged over the image: what the MAML authors' code runs for Omniglot; it uses
        ``lax.conv``, so ``conv`` must be ``"auto"`` or ``"xla"``).
      compute_dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``: convolutions, pooling and the head
        computed in that dtype, batch norm's statistics and the parameters, gradients and losses in float32
        (:func:`with_compute_dtype`).

    Returns:
      A :class:`Model` whose ``apply(params, x, reference=None)`` follows the
      batch-norm policy of this module's docstring. The head's parameters are
      under ``params/head`` (the ANIL selector ``"head"``).

    >>> import jax
    >>> m = conv4(ways=5, filters=8)
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jax.numpy.zeros((2, 28, 28, 1))).shape
    (2, 5)
    """
    if not isinstance(closed_form, bool):
        raise TypeError(f"closed_form must be a bool, got {closed_form!r}.")
    check_compute_dtype(compute_dtype, "compute_dtype")
    if downsample not in DOWNSAMPLING:
        raise ValueError(f"downsample must be one of {DOWNSAMPLING}, got {downsample!r}.")
    if downsample == "stride":
        if conv not in ("auto", "xla"):
            raise ValueError(
                f"conv={conv!r} has no stride-2 form: downsample='stride' takes conv='xla' (or 'auto'), got {conv!r}."
            )
        conv = "xla"
    module = Conv4Module(
        ways=ways, filters=filters, conv=resolve_conv_impl(conv), closed_form=closed_form, downsample=downsample
    )
    shape = (image_size, image_size, channels)
    model = from_linen(module, shape, reference_norm=True, init_batch=2, name="conv4")
    return with_compute_dtype(model, compute_dtype)


# ---------------------------------------------------------------------------
# Models with state: per-step batch norm with running statistics (MAML++).
# ---------------------------------------------------------------------------

BN_MODES = ("batch", "support", "running")
"""How :func:`conv4_per_step` normalises: ``"batch"`` (the batch's own statistics, transductive; the running
statistics are updated when ``update=True``), ``"support"`` (the reference batch's statistics) or ``"running"``
(the running statistics of the current step: each example is scored on its own, non-transductive)."""


class StatefulModel(NamedTuple):
    """A pure model with state: ``init(key) -> (params, state)`` and
    ``apply(params, state, x, *, step=0, mode="batch", reference=None, key=None, update=True) -> (out, state)``.

    Attributes:
      init: initialiser of the parameters and the state (e.g. ``{"batch_stats": ...}``).
      apply: forward pass over a leading batch axis; returns the output and the new state (the old one
        unless ``mode="batch"`` and ``update``).
      input_shape: the per-example input shape.
      num_steps: how many inner steps its per-step parameters and statistics cover (``None``: none are
        per-step).
      needs_key: whether ``apply`` draws randomness (dropout) in ``mode="batch"`` and so needs ``key``.
      module: the underlying Flax module.
    """

    init: Callable[[jax.Array], tuple[Params, Any]]
    apply: Callable[..., tuple[jax.Array, Any]]
    input_shape: tuple[int, ...]
    num_steps: int | None = None
    needs_key: bool = False
    module: Any = None


def check_bn_mode(mode: Any) -> str:
    if mode not in BN_MODES:
        raise ValueError(f"mode must be one of {BN_MODES}, got {mode!r}.")
    return mode


class PerStepBatchNorm(nn.Module):
    """Batch norm with per-step weights and biases (BNWB) and per-step running statistics (BNRS).

    With ``num_steps=K`` the scale and bias have shape ``(K, C)`` and inner step ``t`` uses row ``t``; so do the
    running mean and variance (collection ``batch_stats``), updated as
    ``r_t <- (1 - momentum) r_t + momentum * batch_t`` when the layer normalises a batch with its own
    statistics (the variance entering the running average is the unbiased one, as in PyTorch). ``num_steps=None``
    keeps one set shared by all steps. Antoniou, Edwards & Storkey (2019), section 4.
    """

    num_steps: int | None = None
    per_step_weights: bool = True
    per_step_stats: bool = True
    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, step, mode="batch", num_ref=None, update=True):
        c = x.shape[-1]
        k = self.num_steps
        wshape = (k, c) if (k and self.per_step_weights) else (c,)
        sshape = (k, c) if (k and self.per_step_stats) else (c,)
        scale = self.param("scale", nn.initializers.ones, wshape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, wshape, jnp.float32)
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(sshape, jnp.float32))
        var = self.variable("batch_stats", "var", lambda: jnp.ones(sshape, jnp.float32))

        def row(a, per_step):
            return jax.lax.dynamic_index_in_dim(a, step, keepdims=False) if per_step else a

        per_w, per_s = len(wshape) == 2, len(sshape) == 2
        scale, bias = row(scale, per_w).astype(x.dtype), row(bias, per_w).astype(x.dtype)
        if mode == "running":
            m, v = row(mean.value, per_s), row(var.value, per_s)
            inv = jax.lax.rsqrt(v + self.epsilon).astype(x.dtype)

            def channels(a):
                return a.reshape((1,) * (x.ndim - 1) + (c,))

            return (x - channels(m.astype(x.dtype))) * channels(inv * scale) + channels(bias)
        y = batch_norm(x, scale, bias, num_ref if mode == "support" else None, self.epsilon)
        if mode == "batch" and update and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
            xs = jax.lax.stop_gradient(x).astype(jnp.float32)
            n = xs.shape[0] * xs.shape[1] * xs.shape[2]
            bm = jnp.mean(xs, axis=(0, 1, 2))
            bv = jnp.var(xs, axis=(0, 1, 2)) * (n / max(n - 1, 1))
            mom = self.momentum

            def ema(old, new):
                if not per_s:
                    return (1 - mom) * old + mom * new
                cur = row(old, True)
                return jax.lax.dynamic_update_index_in_dim(old, (1 - mom) * cur + mom * new, step, 0)

            mean.value = ema(mean.value, bm)
            var.value = ema(var.value, bv)
        return y


class Conv4PerStepModule(nn.Module):
    """Conv4 (pooling form) whose batch-norm layers are :class:`PerStepBatchNorm` (BNWB, BNRS)."""

    ways: int = 5
    filters: int = 64
    conv: str = "xla"
    num_steps: int | None = 5
    per_step_weights: bool = True
    per_step_stats: bool = True
    momentum: float = 0.1

    @nn.compact
    def __call__(self, x, step=0, mode="batch", num_ref=None, update=True):
        for i in range(4):
            x = conv3x3_layer(self.conv, self.filters, f"Conv_{i}")(x)
            x = PerStepBatchNorm(
                self.num_steps, self.per_step_weights, self.per_step_stats, self.momentum, name=f"Norm_{i}"
            )(x, step, mode, num_ref, update)
            x = relu_max_pool_2x2(x)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.ways, name="head")(x)


def conv4_per_step(
    ways: int = 5,
    filters: int = 64,
    image_size: int = 28,
    channels: int = 1,
    num_steps: int | None = 5,
    *,
    per_step_weights: bool = True,
    per_step_stats: bool = True,
    momentum: float = 0.1,
    conv: str = "auto",
    compute_dtype: str = "float32",
) -> StatefulModel:
    """Conv4 with per-step batch-norm weights and biases and per-step running statistics (MAML++).

    The network of :func:`conv4` (pooling form) whose batch-norm layers ``Norm_0 .. Norm_3`` hold a scale and
    bias per inner step (BNWB) and running statistics per inner step (BNRS), as in Antoniou, Edwards & Storkey
    (2019). ``apply(params, state, x, step=t, mode=...)`` uses row ``t``; ``mode`` is one of :data:`BN_MODES`.
    The convolutions are ``params/Conv_i``, the head ``params/head`` and the batch-norm weights
    ``params/Norm_i`` (MAML++ adapts ``"Conv|head"`` in the inner loop and meta-learns ``Norm``).

    Args:
      ways, filters, image_size, channels, conv, compute_dtype: as in :func:`conv4`.
      num_steps: inner steps K covered by the per-step rows; ``None`` shares one set across steps (then
        ``per_step_weights``/``per_step_stats`` have no effect).
      per_step_weights: BNWB (else one scale/bias shared by all steps).
      per_step_stats: BNRS (else one set of running statistics).
      momentum: running-average momentum (0.1, PyTorch's default and the reference code's).

    >>> import jax
    >>> m = conv4_per_step(ways=5, filters=8, num_steps=3)
    >>> params, state = m.init(jax.random.PRNGKey(0))
    >>> state["batch_stats"]["Norm_0"]["mean"].shape
    (3, 8)
    >>> out, new_state = m.apply(params, state, jax.numpy.ones((2, 28, 28, 1)), step=1)
    >>> out.shape
    (2, 5)

    References:
      Antoniou, Edwards, Storkey (2019). How to train your MAML. ICLR.
    """
    module = Conv4PerStepModule(ways=ways, filters=filters, conv=resolve_conv_impl(conv))
    return stateful_model(
        module,
        (image_size, image_size, channels),
        "conv4_per_step",
        num_steps=num_steps,
        per_step_weights=per_step_weights,
        per_step_stats=per_step_stats,
        momentum=momentum,
        compute_dtype=compute_dtype,
    )


def stateful_model(
    module: nn.Module,
    shape: tuple[int, ...],
    name: str,
    *,
    num_steps: int | None,
    per_step_weights: bool,
    per_step_stats: bool,
    momentum: float,
    compute_dtype: str,
    random: bool = False,
) -> StatefulModel:
    """The :class:`StatefulModel` of a module built on :class:`PerStepBatchNorm` (:func:`conv4_per_step`,
    ResNet-12): the per-step options are checked and set on ``module``, which is called as
    ``module(x, step, mode, num_ref, update)`` (plus ``drop=True`` and a ``dropout`` stream when ``random`` and
    a key is given in ``mode="batch"``)."""
    check_compute_dtype(compute_dtype, "compute_dtype")
    if num_steps is not None:
        from metajax._src.base import check_positive_int

        num_steps = check_positive_int("num_steps", num_steps)
    for arg, value in (("per_step_weights", per_step_weights), ("per_step_stats", per_step_stats)):
        if not isinstance(value, bool):
            raise TypeError(f"{arg} must be a bool, got {value!r}.")
    if not (isinstance(momentum, int | float) and 0.0 <= momentum <= 1.0) or isinstance(momentum, bool):
        raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}.")
    module = module.clone(
        num_steps=num_steps, per_step_weights=per_step_weights, per_step_stats=per_step_stats, momentum=float(momentum)
    )
    dtype = None if compute_dtype == "float32" else jnp.dtype(compute_dtype)

    def init(key):
        variables = module.init(key, jnp.zeros((2, *shape)))
        return {"params": variables["params"]}, {"batch_stats": variables["batch_stats"]}

    def apply(params, state, x, *, step=0, mode="batch", reference=None, key=None, update=True):
        check_bn_mode(mode)
        check_float_input(x, "x", name)
        if state is None:
            raise ValueError(f"state is None: {name} keeps running statistics; pass the state init returned.")
        if mode == "support" and reference is None:
            raise ValueError("mode='support' normalises with a reference batch's statistics: pass reference=support_x.")
        step = jnp.asarray(step, jnp.int32)
        p = params if dtype is None else cast(params, dtype)
        inp = x if dtype is None else cast(x, dtype)
        n = 0
        if mode == "support":
            check_float_input(reference, "reference", name)
            ref = reference if dtype is None else cast(reference, dtype)
            n = ref.shape[0]
            inp = jnp.concatenate([ref, inp], axis=0)
        mutable = ["batch_stats"] if (mode == "batch" and update) else False
        extra = {}
        if random and mode == "batch" and key is not None:
            extra = {"drop": True, "rngs": {"dropout": key}}
        out = module.apply({**p, **state}, inp, step, mode, n or None, update, mutable=mutable, **extra)
        out, new_state = out if mutable else (out, state)
        out = out[n:] if n else out
        return (out if dtype is None else out.astype(jnp.float32)), new_state

    return StatefulModel(init, apply, shape, num_steps, random, module)


def from_linen_stateful(
    module: nn.Module, input_shape: tuple[int, ...], *, rngs: Sequence[str] = (), num_steps: int | None = None
) -> StatefulModel:
    """Wrap a Flax Linen module with mutable collections (``batch_stats``) or randomness (dropout).

    The module is called as ``module(x, train=...)``: ``mode="batch"`` is ``train=True`` (batch statistics,
    the mutable collections updated when ``update``, dropout on) and ``mode="running"`` ``train=False`` (running
    statistics, no dropout); ``mode="support"`` is not available (Flax's ``BatchNorm`` has no reference batch).
    ``rngs`` names the random streams (``("dropout",)``); stream ``i`` gets ``fold_in(key, i)``, and a missing
    key is an error raised while tracing, before anything compiles.

    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, train):
    ...         x = nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x))
    ...         return nn.Dense(2)(nn.Dropout(0.5, deterministic=not train)(x))
    >>> m = from_linen_stateful(Net(), (3,), rngs=("dropout",))
    >>> params, state = m.init(jax.random.PRNGKey(0))
    >>> out, state = m.apply(params, state, jnp.ones((5, 3)), key=jax.random.PRNGKey(1))
    >>> out.shape, sorted(state)
    ((5, 2), ['batch_stats'])
    """
    rngs = tuple(rngs)

    def init(key):
        streams = {"params": key, **{name: jax.random.fold_in(key, i + 1) for i, name in enumerate(rngs)}}
        variables = dict(module.init(streams, jnp.zeros((2, *input_shape)), train=False))
        params = {"params": variables.pop("params")}
        return params, variables

    def apply(params, state, x, *, step=0, mode="batch", reference=None, key=None, update=True):
        del step, reference
        check_bn_mode(mode)
        if mode == "support":
            raise ValueError("mode='support' is not available for a Flax Linen module: use 'batch' or 'running'.")
        train = mode == "batch"
        streams = None
        if train and rngs:
            if key is None:
                raise ValueError(
                    f"this model draws randomness ({', '.join(rngs)}) in mode='batch' and needs key=, got None: "
                    "pass key= to make_meta_step(...).init(..., key=jax.random.key(seed))."
                )
            streams = {name: jax.random.fold_in(key, i) for i, name in enumerate(rngs)}
        mutable = list(state) if (train and update and state) else False
        out = module.apply({**params, **(state or {})}, x, train=train, rngs=streams, mutable=mutable)
        if mutable:
            out, new_state = out
            return out, {**state, **new_state}
        return out, state

    return StatefulModel(init, apply, tuple(input_shape), num_steps, bool(rngs), module)
