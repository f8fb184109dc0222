"""Meta-SGD: meta-learned per-parameter (or per-tensor, or scalar) inner learning rates."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax._src.base import LossFn, MetaLearner, Params, QueryLossFn, Task, check_learning_rate
from metajax._src.inner import AbstractMetaGradient, Selector, partition, select_mask
from metajax._src.learner import gradient_learner
from metajax._src.strategy import make_meta_gradient

GRANULARITIES = ("parameter", "tensor", "scalar")


class MetaSGDParams(NamedTuple):
    """Meta-parameters of Meta-SGD: the initial model and the inner rates.

    ``lrs`` has the structure of ``params`` with leaves shaped like the
    parameters (``"parameter"``), scalars (``"tensor"``), or is one scalar
    (``"scalar"``).
    """

    params: Params
    lrs: Any


def scale_by_learned_rates(lrs: Any, granularity: str) -> optax.GradientTransformation:
    """``update = -lrs * grad`` (element-wise, per tensor, or by one scalar)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        if granularity == "scalar":
            return jax.tree_util.tree_map(lambda g: -lrs * g, updates), state
        return jax.tree_util.tree_map(lambda g, a: -a * g, updates, lrs), state

    return optax.GradientTransformation(init_fn, update_fn)


def meta_sgd(
    loss_fn: LossFn,
    inner_opt: str | optax.GradientTransformation | None = None,
    num_inner_steps: int = 1,
    *,
    inner_lr: float = 0.01,
    granularity: str = "parameter",
    gradient: str | AbstractMetaGradient = "exact",
    has_aux: bool = False,
    query_loss_fn: QueryLossFn | None = None,
    head: Selector | None = None,
    task_chunk: int | None = None,
    task_spec: Task | None = None,
    inner_batch_size: int | None = None,
    stateful: bool = False,
    state_gradient: bool = False,
) -> MetaLearner:
    r"""Meta-SGD: the inner update is :math:`\theta' = \theta - a \circ \nabla f^s(\theta)`.

    Both :math:`\theta` and the learning rates :math:`a` are meta-learned;
    ``init`` returns :class:`MetaSGDParams` and the meta-gradient has the same
    structure. Learning rates are not constrained to be positive (as in the
    paper).

    Args:
      loss_fn: as in :func:`maml`.
      inner_opt: ``None`` or ``"sgd"``: Meta-SGD's inner update is a gradient step scaled by the learned
        rates, so no other optimiser applies (the argument is there so that every factory starts
        ``(loss_fn, inner_opt, num_inner_steps)``).
      num_inner_steps: inner steps (the paper uses 1).
      inner_lr: initial value of every learning rate.
      granularity: ``"parameter"`` (one rate per parameter entry, the paper),
        ``"tensor"`` (one per parameter array) or ``"scalar"`` (one rate: MAML
        with a learned alpha).
      gradient, has_aux, query_loss_fn, head, task_chunk, task_spec, inner_batch_size, stateful, state_gradient: as in
        :func:`maml`.

    Raises:
      ValueError: ``inner_opt`` other than ``None``/``"sgd"``, an unknown ``granularity`` or a negative
        ``inner_lr``.

    >>> import jax.numpy as jnp
    >>> learner = meta_sgd(lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2), "sgd", 1, inner_lr=0.1)
    >>> learner.init(jnp.zeros(2)).lrs
    Array([0.1, 0.1], dtype=float32)

    References:
      Li, Zhou, Chen, Li (2017). Meta-SGD: Learning to Learn Quickly for
      Few-Shot Learning. arXiv:1707.09835.
    """
    if inner_opt not in (None, "sgd"):
        raise ValueError(
            f"meta_sgd learns the rates of plain gradient steps: inner_opt must be None or 'sgd', got {inner_opt!r}."
        )
    check_learning_rate("inner_lr", inner_lr)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}.")

    def init(params):
        if head is not None:
            select_mask(params, head)
        if granularity == "parameter":
            lrs = jax.tree_util.tree_map(lambda p: jnp.full(jnp.shape(p), inner_lr, jnp.result_type(p)), params)
        elif granularity == "tensor":
            lrs = jax.tree_util.tree_map(lambda p: jnp.asarray(inner_lr, jnp.result_type(p)), params)
        else:
            dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
            lrs = jnp.asarray(inner_lr, dtype)
        return MetaSGDParams(params, lrs)

    def inner_opt_of(meta_params, mask):
        lrs = meta_params.lrs
        if mask is not None and granularity != "scalar":
            lrs, _ = partition(lrs, mask)
        return scale_by_learned_rates(lrs, granularity)

    return gradient_learner(
        name="meta_sgd",
        loss_fn=loss_fn,
        has_aux=has_aux,
        query_loss_fn=query_loss_fn,
        num_inner_steps=num_inner_steps,
        gradient=make_meta_gradient(gradient),
        inner_opt_of=inner_opt_of,
        init=init,
        model_params=lambda mp: mp.params,
        head=head,
        task_chunk=task_chunk,
        task_spec=task_spec,
        inner_batch_size=inner_batch_size,
        stateful=stateful,
        state_gradient=state_gradient,
    )
