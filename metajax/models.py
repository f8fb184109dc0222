"""Models as pure functions, and the task losses built from them.

A :class:`Model` is a pair ``init(key) -> params`` and ``apply(params, x, reference=None)``; the meta-learning
core sees only ``apply`` through a loss. Bring your own network with :func:`from_nnx` (a Flax NNX module),
:func:`from_linen` (a Flax Linen module), or write ``Model(init, apply, input_shape)`` around any function of a
pytree of arrays. Ready-made: :func:`mlp` (the sinusoid network of Finn, Abbeel & Levine 2017) and
:func:`conv4` (the four-block convolutional network of Vinyals et al. 2016, used by MAML on Omniglot and
Mini-ImageNet) and :func:`resnet12` (the residual network of Oreshkin et al. 2018 and Lee et al. 2019, the
backbone of few-shot results since; :func:`resnet12_stateful` adds running statistics and DropBlock).

Batch-norm policies of :func:`conv4` (no running statistics are kept, as in the MAML reference code):

* ``transductive`` (``apply(params, x)``): every call normalises with the statistics of the batch it is given,
  so a query prediction depends on the other query examples;
* ``support`` (``apply(params, x, reference=support_x)``, non-transductive): every layer normalises with the
  support batch's statistics, so each query example is scored on its own.

Mixed precision: ``conv4(..., compute_dtype="bfloat16")`` and ``mlp(..., compute_dtype=...)``, or
:func:`with_compute_dtype` around any model, compute the forward pass (and so the inner loop's gradients) in
bfloat16 or float16 and keep parameters, optimiser states, updates and losses in float32.

Models with state (MAML++): a :class:`StatefulModel` has ``init(key) -> (params, state)`` and
``apply(params, state, x, step=, mode=, key=) -> (out, state)``: :func:`conv4_per_step` (per-step batch-norm
weights and running statistics, Antoniou, Edwards & Storkey 2019) and :func:`from_linen_stateful` (any Linen
module with ``batch_stats`` or dropout). Batch-norm modes (:data:`BN_MODES`): ``batch`` (transductive),
``support`` and ``running`` (non-transductive, the running statistics).

Losses: :func:`mse_loss`, :func:`cross_entropy_loss` (returns ``(loss, {"accuracy": ...})``: use
``has_aux=True``) and :func:`cross_entropy_query_loss` (the query loss under a batch-norm policy).

The convolution and pooling kernels with hand-written, differentiable gradients that :func:`conv4` uses are
here too, for custom networks: :func:`im2col_conv3x3`, :func:`winograd_conv3x3`, :func:`conv_s1`,
:func:`batch_norm`, :func:`relu_max_pool_2x2`, :func:`leaky_relu_max_pool_2x2`, :func:`drop_block`.
"""

from metajax._src.kernels import (
    batch_norm,
    conv_s1,
    im2col_conv3x3,
    leaky_relu_max_pool_2x2,
    max_pool_2x2,
    relu_max_pool_2x2,
    winograd_conv3x3,
)
from metajax._src.losses import (
    cross_entropy_loss,
    cross_entropy_query_loss,
    mse_loss,
    stateful_cross_entropy_loss,
    stateful_cross_entropy_query_loss,
)
from metajax._src.models import (
    BN_MODES,
    COMPUTE_DTYPES,
    CONV_IMPLS,
    Model,
    PerStepBatchNorm,
    StatefulModel,
    conv4,
    conv4_per_step,
    from_linen,
    from_linen_stateful,
    from_nnx,
    mlp,
    resolve_conv_impl,
    with_compute_dtype,
)
from metajax._src.resnet import RESNET12_WIDTHS, drop_block, resnet12, resnet12_stateful

__all__ = [
    "BN_MODES",
    "COMPUTE_DTYPES",
    "CONV_IMPLS",
    "Model",
    "PerStepBatchNorm",
    "RESNET12_WIDTHS",
    "StatefulModel",
    "batch_norm",
    "conv4",
    "conv4_per_step",
    "conv_s1",
    "cross_entropy_loss",
    "cross_entropy_query_loss",
    "drop_block",
    "from_linen",
    "from_linen_stateful",
    "from_nnx",
    "im2col_conv3x3",
    "leaky_relu_max_pool_2x2",
    "max_pool_2x2",
    "mlp",
    "mse_loss",
    "relu_max_pool_2x2",
    "resnet12",
    "resnet12_stateful",
    "resolve_conv_impl",
    "stateful_cross_entropy_loss",
    "stateful_cross_entropy_query_loss",
    "winograd_conv3x3",
    "with_compute_dtype",
]
