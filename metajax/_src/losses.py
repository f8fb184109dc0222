"""Task losses: ``loss_fn(params, (x, y))`` for the inner loop, and query losses.

A loss is built from a model's pure ``apply``; classification losses return
``(loss, {"accuracy": ...})`` and are used with ``has_aux=True``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import optax


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


def stateful_cross_entropy_loss(model) -> Callable:
    """The support loss of a :class:`~metajax.models.StatefulModel` for :func:`~metajax.maml_plus_plus`.

    ``loss(params, state, (x, labels), step, key) -> (cross-entropy, (new_state, {"accuracy": ...}))``: the batch's
    own statistics, the running statistics updated (``has_aux=True``).
    """

    def loss(params, state, batch, step, key):
        x, y = batch
        logits, new_state = model.apply(params, state, x, step=step, mode="batch", key=key)
        value, aux = _xent(logits, y)
        return value, (new_state, aux)

    return loss


def stateful_cross_entropy_query_loss(model, mode: str = "batch") -> Callable:
    """Query loss ``fn(params, state, query, support, step, key) -> (loss, {"accuracy": ...})`` of a stateful model.

    ``mode``: ``"batch"`` (the query batch's statistics, transductive), ``"support"`` (the support batch's) or
    ``"running"`` (the running statistics of ``step``; each query example scored on its own). The state is
    read, never updated.
    """
    from metajax._src.models import check_bn_mode

    check_bn_mode(mode)

    def loss(params, state, query, support, step, key):
        x, y = query
        ref = support[0] if mode == "support" else None
        logits, _ = model.apply(params, state, x, step=step, mode=mode, reference=ref, key=key, update=False)
        return _xent(logits, y)

    return loss


def _xent(logits, labels):
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    acc = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))
    return loss, {"accuracy": acc}
