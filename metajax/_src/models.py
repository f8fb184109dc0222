"""Models (Flax Linen modules used through a pure ``apply``) and task losses.

The core never imports Flax; this layer turns a Flax module into a
:class:`Model` with ``init(key) -> params`` and a pure
``apply(params, x, reference=None)``.

Batch normalisation policy of :class:`Conv4` (no running statistics are kept,
as in the MAML reference implementation):

* transductive (``reference=None``): each call normalises with the statistics
  of the batch it is given. The support and the query batch are evaluated in
  separate calls, so each uses its own statistics; a query prediction then
  depends on the other query examples.
* non-transductive (``reference=support_x``): every BatchNorm layer uses the
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
import optax

from metajax._src.base import Params


class Model(NamedTuple):
    """A pure model: ``init(key) -> params``, ``apply(params, x, reference=None)``.

    Attributes:
      init: parameter initialiser.
      apply: forward pass over a leading batch axis.
      input_shape: the per-example input shape.
      module: the underlying Flax module (for inspection).
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., jax.Array]
    input_shape: tuple[int, ...]
    module: Any


def from_linen(module: nn.Module, input_shape: tuple[int, ...]) -> Model:
    """Wrap any Flax Linen module: ``init(key)``, ``apply(params, x)``.

    Args:
      module: a Linen module called as ``module(x)``.
      input_shape: the per-example input shape (used by ``init``).

    >>> m = from_linen(nn.Dense(3), (2,))
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jnp.ones((4, 2))).shape
    (4, 3)
    """

    def init(key):
        return module.init(key, jnp.zeros((1, *input_shape)))

    def apply(params, x, reference=None):
        del reference
        return module.apply(params, x)

    return Model(init, apply, tuple(input_shape), module)


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


def mlp(in_features: int = 1, hidden: Sequence[int] = (40, 40), out: int = 1) -> Model:
    """The sinusoid network of the MAML paper: 1-40-40-1 with ReLU by default.

    >>> import jax
    >>> m = mlp()
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jax.numpy.zeros((5, 1))).shape
    (5, 1)
    """
    module = MLPModule(hidden=tuple(hidden), out=out)

    def init(key):
        return module.init(key, jnp.zeros((1, in_features)))

    def apply(params, x, reference=None):
        del reference  # no batch statistics: the policy does not matter
        return module.apply(params, x)

    return Model(init, apply, (in_features,), module)


class RefBatchNorm(nn.Module):
    """Batch norm over (batch, H, W) using the first ``num_ref`` examples' statistics.

    ``num_ref=None`` uses the whole batch (transductive). Learnable per-channel
    scale and offset; no running averages.
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, num_ref=None):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ref = x if num_ref is None else x[:num_ref]
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(ref, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(ref - mean), axis=axes, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        shape = (1,) * (x.ndim - 1) + (c,)
        return y * scale.astype(x.dtype).reshape(shape) + bias.astype(x.dtype).reshape(shape)


class PatchConv3x3(nn.Module):
    """3x3 SAME convolution as nine shifted slices and one matmul (im2col).

    Same parameters (``kernel`` of shape (3, 3, C, F), ``bias``) and the same
    result as ``nn.Conv(F, (3, 3), padding="SAME")``. On XLA:CPU its forward,
    backward and second-order passes are all matmuls, slices and pads, which
    run ~20x faster than XLA:CPU's convolution kernels on the MAML workload
    (benchmarks/README.md); on GPU/TPU the native convolution is better.
    """

    features: int

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        n, h, w, _ = x.shape
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols = jnp.concatenate([xp[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1)
        y = cols.reshape(n * h * w, 9 * c) @ kernel.astype(x.dtype).reshape(9 * c, self.features)
        return y.reshape(n, h, w, self.features) + bias.astype(x.dtype).reshape(1, 1, 1, self.features)


def max_pool_2x2(x):
    """2x2 max-pool, stride 2, VALID (an odd trailing row/column is dropped), NHWC.

    A reshape and a max-reduction instead of ``reduce_window``: the same values
    and first-order gradients (away from ties), but its gradient is an
    elementwise mask where ``reduce_window``'s is ``select_and_scatter``, which
    XLA:CPU runs ~7x slower (the MAML step went from 3.0 to 2.0 s/it;
    benchmarks/README.md).
    """
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, : 2 * h2, : 2 * w2, :].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


CONV_IMPLS = ("auto", "patches", "xla")


def resolve_conv_impl(conv: str) -> str:
    """``"auto"`` is ``"patches"`` on CPU and ``"xla"`` (cuDNN and friends) elsewhere."""
    if conv not in CONV_IMPLS:
        raise ValueError(f"conv must be one of {CONV_IMPLS}, got {conv!r}.")
    if conv == "auto":
        return "patches" if jax.default_backend() == "cpu" else "xla"
    return conv


class Conv4Module(nn.Module):
    """Four blocks of 3x3 conv (SAME), batch norm, 2x2 max-pool and ReLU, then a linear head."""

    ways: int = 5
    filters: int = 64
    conv: str = "xla"

    @nn.compact
    def __call__(self, x, num_ref=None):
        for i in range(4):
            if self.conv == "patches":
                x = PatchConv3x3(self.filters, name=f"Conv_{i}")(x)
            else:
                x = nn.Conv(self.filters, (3, 3), padding="SAME", name=f"Conv_{i}")(x)
            x = RefBatchNorm()(x, num_ref)
            # max-pool then ReLU (they commute, ReLU being monotone): the pool
            # sees generic pre-activations, so ties (where max's gradient is
            # split) have probability zero instead of being every all-zero
            # ReLU window, and ReLU runs on a 4x smaller tensor.
            x = nn.relu(max_pool_2x2(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.ways, name="head")(x)


def conv4(ways: int = 5, filters: int = 64, image_size: int = 28, channels: int = 1, conv: str = "auto") -> Model:
    """The standard 4-block conv net of MAML (Omniglot 28x28x1, Mini-ImageNet 84x84x3).

    Args:
      ways: number of output classes.
      filters: filters per conv layer (64 for Omniglot, 32 for Mini-ImageNet).
      image_size: input height and width.
      channels: input channels.
      conv: ``"patches"`` (im2col matmuls), ``"xla"`` (``lax.conv``) or
        ``"auto"`` (patches on CPU, XLA elsewhere). Both have the same
        parameters and agree to float rounding.

    Returns:
      A :class:`Model` whose ``apply(params, x, reference=None)`` follows the
      batch-norm policy of this module's docstring. The head's parameters are
      under ``params/head`` (the ANIL selector ``"head"``).

    >>> import jax
    >>> m = conv4(ways=5, filters=8)
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jax.numpy.zeros((2, 28, 28, 1))).shape
    (2, 5)
    """
    module = Conv4Module(ways=ways, filters=filters, conv=resolve_conv_impl(conv))
    shape = (image_size, image_size, channels)

    def init(key):
        return module.init(key, jnp.zeros((2, *shape)))

    def apply(params, x, reference=None):
        if reference is None:
            return module.apply(params, x)
        n = reference.shape[0]
        return module.apply(params, jnp.concatenate([reference, x], axis=0), num_ref=n)[n:]

    return Model(init, apply, shape, module)


# ---------------------------------------------------------------------------
# Task losses: loss_fn(params, (x, y)) for the inner loop, and query losses.
# ---------------------------------------------------------------------------


def mse_loss(apply: Callable) -> Callable:
    """``loss(params, (x, y)) = mean((apply(params, x) - y)^2)``."""

    def loss(params, batch):
        x, y = batch
        return jnp.mean(jnp.square(apply(params, x) - y))

    return loss


def cross_entropy_loss(apply: Callable) -> Callable:
    """``loss(params, (x, labels)) -> (mean cross-entropy, {"accuracy": ...})``.

    Transductive batch norm: the batch's own statistics (``has_aux=True``).
    """

    def loss(params, batch):
        x, y = batch
        logits = apply(params, x)
        return _xent(logits, y)

    return loss


def cross_entropy_query_loss(apply: Callable, bn: str = "transductive") -> Callable:
    """Query loss ``fn(params, query, support) -> (loss, {"accuracy": ...})``.

    Args:
      apply: the model's apply.
      bn: ``"transductive"`` (query statistics) or ``"support"`` (each query
        example normalised with the support batch's statistics).
    """
    if bn not in ("transductive", "support"):
        raise ValueError(f"bn must be 'transductive' or 'support', got {bn!r}.")

    def loss(params, query, support):
        x, y = query
        logits = apply(params, x, reference=support[0] if bn == "support" else None)
        return _xent(logits, y)

    return loss


def _xent(logits, labels):
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    acc = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))
    return loss, {"accuracy": acc}
