"""Gradient strategies by name, and :func:`inner_loop`, the inner loop as one public function.

``"exact"`` (:class:`~metajax._src.inner.Exact`), ``"exact_remat"`` (``Exact(remat=True)``),
``"exact_remat_dots"`` (``Exact(remat=True, policy=jax.checkpoint_policies.dots_saveable)``: the backward pass keeps
the outputs of matrix products and ``lax.conv`` convolutions, the costly part of a step, and recomputes the
rest), ``"first_order"`` (:class:`~metajax._src.inner.FirstOrder`) and ``"implicit"``
(:class:`~metajax._src.implicit.Implicit`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import optax

from metajax._src.base import Batch, InnerResult, LossFn, Params
from metajax._src.implicit import Implicit
from metajax._src.inner import AbstractMetaGradient, Exact, FirstOrder, support_loss

META_GRADIENTS: dict[str, Callable[[], AbstractMetaGradient]] = {
    "exact": Exact,
    "exact_remat": functools.partial(Exact, remat=True),
    "exact_remat_dots": functools.partial(Exact, remat=True, policy=jax.checkpoint_policies.dots_saveable),
    "first_order": FirstOrder,
    "implicit": Implicit,
}


def make_meta_gradient(gradient: str | AbstractMetaGradient) -> AbstractMetaGradient:
    """Resolve a name or pass an ``AbstractMetaGradient`` instance through.

    Names: ``"exact"``, ``"exact_remat"`` (``Exact(remat=True)``), ``"exact_remat_dots"`` (``Exact(remat=True,
    policy=jax.checkpoint_policies.dots_saveable)``), ``"first_order"``, ``"implicit"`` (``Implicit()``).
    """
    if isinstance(gradient, AbstractMetaGradient):
        return gradient
    if isinstance(gradient, str) and gradient in META_GRADIENTS:
        return META_GRADIENTS[gradient]()
    raise ValueError(
        f"gradient must be one of {sorted(META_GRADIENTS)} or an AbstractMetaGradient instance, got {gradient!r}."
    )


def inner_loop(
    loss_fn: LossFn,
    inner_opt: optax.GradientTransformation,
    params: Params,
    batch: Batch,
    num_steps: int,
    *,
    gradient: str | AbstractMetaGradient = "exact",
    has_aux: bool = False,
    mask: Any = None,
    eval_fn: Callable[[Params], Any] | None = None,
) -> InnerResult:
    """Adapt ``params`` on ``batch`` for ``num_steps`` steps of ``inner_opt``.

    Public convenience wrapper around ``AbstractMetaGradient.inner_loop``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (or ``(loss, aux)`` with
        ``has_aux=True``).
      inner_opt: any ``optax.GradientTransformation``.
      params: initial parameters.
      batch: support batch with a leading example axis.
      num_steps: number of inner steps (>= 1).
      gradient: ``"exact"``, ``"first_order"`` or an ``AbstractMetaGradient``.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      mask: optional boolean pytree selecting the adapted leaves.
      eval_fn: optional function of the parameters recorded along the way.

    Returns:
      An :class:`InnerResult` with the adapted parameters.

    >>> import jax.numpy as jnp, optax
    >>> loss = lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2)
    >>> res = inner_loop(loss, optax.sgd(0.1), jnp.array(0.0), (jnp.ones(4), 2 * jnp.ones(4)), 3)
    >>> res.losses.shape
    (3,)
    """
    return make_meta_gradient(gradient).inner_loop(
        support_loss(loss_fn, has_aux, stateful=False), inner_opt, params, batch, num_steps, mask=mask, eval_fn=eval_fn
    )
