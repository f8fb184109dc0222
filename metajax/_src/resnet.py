"""ResNet-12, the backbone of few-shot learning since Oreshkin et al. (2018) and Lee et al. (2019).

Four residual blocks; block ``i`` is three 3x3 convolutions of ``widths[i]`` filters, each followed by batch norm
(leaky ReLU after the first two), a shortcut of a 1x1 convolution and batch norm, the sum, a leaky ReLU and a
2x2 max-pool; then global average pooling and a linear head. At 84x84 the feature maps are 42, 21, 10 and 5
pixels wide; 64-160-320-640 filters make 12.4 M parameters. The convolutions have no bias (batch norm follows).

:func:`resnet12` is a stateless :class:`~metajax._src.models.Model` with the batch-norm policies of
:func:`~metajax._src.models.conv4` (transductive, or the support set's statistics); :func:`resnet12_stateful`
keeps running statistics (optionally per inner step, as MAML++ does) and regularises with DropBlock.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax._src.kernels import leaky_relu_max_pool_2x2, max_pool_2x2
from metajax._src.models import (
    Model,
    PerStepBatchNorm,
    RefBatchNorm,
    StatefulModel,
    check_compute_dtype,
    conv3x3_layer,
    from_linen,
    resolve_conv_impl,
    stateful_model,
    with_compute_dtype,
)

RESNET12_WIDTHS = (64, 160, 320, 640)
"""The widths of Lee et al. (2019) and Ye & Chao (2022); Oreshkin et al. (2018) used (64, 128, 256, 512)."""


def drop_block(x: jax.Array, key: jax.Array, rate: float, block_size: int) -> jax.Array:
    """DropBlock (Ghiasi, Lin & Le 2018): zero square blocks of each channel and rescale what is kept.

    Block centres are drawn from the positions where a whole ``block_size`` block fits, each with probability
    ``gamma = rate / block_size**2 * H W / ((H - b + 1) (W - b + 1))`` so that about ``rate`` of the units are
    dropped; the output is ``x * keep * keep.size / keep.sum()``. The mask depends on the key only.

    Args:
      x: activations, shape (N, H, W, C).
      key: PRNG key.
      rate: fraction of units to drop, in [0, 1).
      block_size: block side; clipped to the feature map's size.

    Returns:
      ``x`` with the blocks zeroed, same shape and dtype.
    """
    n, h, w, c = x.shape
    b = min(block_size, h, w)
    gamma = rate / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
    centres = jax.random.bernoulli(key, gamma, (n, h - b + 1, w - b + 1, c)).astype(x.dtype)
    # a centre at (i, j) drops the block [i, i + b) x [j, j + b): a stride-1 max over b x b windows of the
    # centres padded by b - 1 on every side
    padded = jnp.pad(centres, ((0, 0), (b - 1, b - 1), (b - 1, b - 1), (0, 0)))
    dropped = jax.lax.reduce_window(padded, jnp.array(0, x.dtype), jax.lax.max, (1, b, b, 1), (1, 1, 1, 1), "VALID")
    keep = 1 - dropped
    return x * keep * (keep.size / jnp.maximum(jnp.sum(keep), 1))


class ResNet12Module(nn.Module):
    """ResNet-12 (module docstring). ``stateful`` selects :class:`PerStepBatchNorm` (running statistics,
    per-step rows with ``num_steps``) over :class:`RefBatchNorm`; ``drop_rate`` adds dropout after blocks 1-2
    and DropBlock after blocks 3-4 (Lee et al. 2019) on calls given a ``dropout`` stream."""

    ways: int = 5
    widths: tuple[int, ...] = RESNET12_WIDTHS
    conv: str = "xla"
    negative_slope: float = 0.1
    closed_form: bool = True
    stateful: bool = False
    num_steps: int | None = None
    per_step_weights: bool = True
    per_step_stats: bool = True
    momentum: float = 0.1
    drop_rate: float = 0.0
    drop_block_size: int = 5

    @nn.compact
    def __call__(self, x, step=0, mode="batch", num_ref=None, update=True, drop=False):
        def norm(h, name):
            if self.stateful:
                layer = PerStepBatchNorm(
                    self.num_steps, self.per_step_weights, self.per_step_stats, self.momentum, name=name
                )
                return layer(h, step, mode, num_ref, update)
            return RefBatchNorm(closed_form=self.closed_form, name=name)(h, num_ref)

        def act(h):
            return jax.nn.leaky_relu(h, self.negative_slope)

        for i, width in enumerate(self.widths):
            y = x
            for j in range(3):
                conv = conv3x3_layer(self.conv, width, f"Block_{i}_Conv_{j}", use_bias=False)
                y = norm(conv(y), f"Block_{i}_Norm_{j}")
                if j < 2:
                    y = act(y)
            shortcut = nn.Dense(width, use_bias=False, name=f"Block_{i}_Shortcut")(x)  # a 1x1 convolution
            y = y + norm(shortcut, f"Block_{i}_ShortcutNorm")
            if self.closed_form:
                x = leaky_relu_max_pool_2x2(y, self.negative_slope)
            else:
                x = act(max_pool_2x2(y))
            if drop and self.drop_rate > 0:
                key = self.make_rng("dropout")
                if i < 2:
                    keep = jax.random.bernoulli(key, 1 - self.drop_rate, x.shape).astype(x.dtype)
                    x = x * keep / (1 - self.drop_rate)
                else:
                    x = drop_block(x, key, self.drop_rate, self.drop_block_size)
        return nn.Dense(self.ways, name="head")(jnp.mean(x, axis=(1, 2)))


def _check_widths(widths) -> tuple[int, ...]:
    widths = tuple(widths) if isinstance(widths, Sequence) and not isinstance(widths, str) else widths
    if not (
        isinstance(widths, tuple)
        and len(widths) == 4
        and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
    ):
        raise ValueError(f"widths must be four positive ints (one per block), got {widths!r}.")
    return widths


def _check_slope(negative_slope) -> float:
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, int | float) or negative_slope < 0:
        raise ValueError(f"negative_slope must be a number >= 0, got {negative_slope!r}.")
    return float(negative_slope)


def resnet12(
    ways: int = 5,
    widths: Sequence[int] = RESNET12_WIDTHS,
    image_size: int = 84,
    channels: int = 3,
    *,
    negative_slope: float = 0.1,
    conv: str = "auto",
    closed_form: bool = True,
    compute_dtype: str = "float32",
) -> Model:
    """ResNet-12 without state: the batch-norm policies of :func:`conv4`, no running statistics.

    Args:
      ways: output classes.
      widths: filters of the four blocks (:data:`RESNET12_WIDTHS`, 64-160-320-640, by default).
      image_size, channels: the input (84x84x3 for Mini-ImageNet and tiered-ImageNet, 32x32x3 for CIFAR-FS and
        FC100).
      negative_slope: leaky ReLU's slope below zero.
      conv, compute_dtype: as in :func:`conv4` (every implementation agrees with ``lax.conv`` to float rounding,
        second order included).
      closed_form: batch norm and leaky-ReLU-max-pool with closed-form gradients (:func:`batch_norm`,
        :func:`leaky_relu_max_pool_2x2`); ``False`` differentiates the plain formulas (a reference).

    Returns:
      A :class:`Model`; ``apply(params, x, reference=None)`` normalises with the batch's statistics, or the
      reference (support) batch's. Parameters: ``params/Block_i_Conv_j``, ``Block_i_Norm_j``,
      ``Block_i_Shortcut``, ``Block_i_ShortcutNorm`` and ``head`` (the ANIL selector ``"head"``).

    >>> import jax
    >>> m = resnet12(ways=5, widths=(4, 6, 8, 10), image_size=16, channels=3)
    >>> m.apply(m.init(jax.random.PRNGKey(0)), jax.numpy.zeros((2, 16, 16, 3))).shape
    (2, 5)

    References:
      Oreshkin, Rodríguez López, Lacoste (2018). TADAM: task dependent adaptive metric for improved few-shot
      learning. NeurIPS. Lee, Maji, Ravichandran, Soatto (2019). Meta-learning with differentiable convex
      optimization. CVPR. Ye, Chao (2022). How to train your MAML to excel in few-shot classification. ICLR.
    """
    if not isinstance(closed_form, bool):
        raise TypeError(f"closed_form must be a bool, got {closed_form!r}.")
    check_compute_dtype(compute_dtype, "compute_dtype")
    module = ResNet12Module(
        ways=ways,
        widths=_check_widths(widths),
        conv=resolve_conv_impl(conv),
        negative_slope=_check_slope(negative_slope),
        closed_form=closed_form,
    )
    shape = (image_size, image_size, channels)
    model = from_linen(module, shape, reference_norm=True, init_batch=2, name="resnet12")
    return with_compute_dtype(model, compute_dtype)


def resnet12_stateful(
    ways: int = 5,
    widths: Sequence[int] = RESNET12_WIDTHS,
    image_size: int = 84,
    channels: int = 3,
    *,
    num_steps: int | None = None,
    per_step_weights: bool = True,
    per_step_stats: bool = True,
    momentum: float = 0.1,
    drop_rate: float = 0.0,
    drop_block_size: int = 5,
    negative_slope: float = 0.1,
    conv: str = "auto",
    compute_dtype: str = "float32",
) -> StatefulModel:
    """ResNet-12 with running statistics and DropBlock: a :class:`StatefulModel` for :func:`maml_plus_plus`.

    Batch norm is :class:`PerStepBatchNorm`: one set of weights and running statistics (``num_steps=None``) or a
    row per inner step (BNWB and BNRS of MAML++). With ``drop_rate > 0``, calls in ``mode="batch"`` given a
    ``key`` drop units after blocks 1-2 (dropout) and blocks of ``drop_block_size`` after blocks 3-4 (DropBlock),
    as Lee et al. (2019); calls without a key (evaluation) are deterministic. The meta-step hands every task and
    inner step its own key (``make_meta_step(...).init(..., key=)``).

    Args:
      ways, widths, image_size, channels, negative_slope, conv, compute_dtype: as in :func:`resnet12`.
      num_steps, per_step_weights, per_step_stats, momentum: as in :func:`conv4_per_step`.
      drop_rate: fraction of units dropped, in [0, 1).
      drop_block_size: DropBlock's block side (5 in Lee et al. 2019).

    >>> import jax
    >>> m = resnet12_stateful(widths=(4, 6, 8, 10), image_size=16, drop_rate=0.1)
    >>> params, state = m.init(jax.random.PRNGKey(0))
    >>> out, state = m.apply(params, state, jax.numpy.ones((2, 16, 16, 3)), key=jax.random.PRNGKey(1))
    >>> out.shape, m.needs_key
    ((2, 5), True)
    """
    check_compute_dtype(compute_dtype, "compute_dtype")
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, int | float) or not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}.")
    if isinstance(drop_block_size, bool) or not isinstance(drop_block_size, int) or drop_block_size < 1:
        raise ValueError(f"drop_block_size must be a positive int, got {drop_block_size!r}.")
    module = ResNet12Module(
        ways=ways,
        widths=_check_widths(widths),
        conv=resolve_conv_impl(conv),
        negative_slope=_check_slope(negative_slope),
        stateful=True,
        drop_rate=float(drop_rate),
        drop_block_size=drop_block_size,
    )
    return stateful_model(
        module,
        (image_size, image_size, channels),
        "resnet12_stateful",
        num_steps=num_steps,
        per_step_weights=per_step_weights,
        per_step_stats=per_step_stats,
        momentum=momentum,
        compute_dtype=compute_dtype,
        random=drop_rate > 0,
    )
