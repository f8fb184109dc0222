"""Shared machinery of the algorithm factories: per-task directions and batching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metajax._src.base import InnerResult, MetaLearner, Metrics, Task, check_positive_int
from metajax._src.inner import AbstractMetaGradient, normalize_loss, select_mask
from metajax._src.validation import check_task

AS_TRAINED = "as_trained"
"""``adapt(..., batch_size=AS_TRAINED)`` uses the learner's ``inner_batch_size``."""


def query_loss_from(loss_fn: Callable, query_loss_fn: Callable | None, has_aux: bool) -> Callable:
    """``query_loss(params, query, support) -> (loss, aux)`` with defaults."""
    if query_loss_fn is not None:
        return normalize_loss_3(query_loss_fn, has_aux)
    loss = normalize_loss(loss_fn, has_aux)

    def query_loss(params, query, support):
        del support
        return loss(params, query)

    return query_loss


def normalize_loss_3(fn: Callable, has_aux: bool) -> Callable:
    if has_aux:
        return fn

    def with_aux(params, query, support):
        return fn(params, query, support), {}

    return with_aux


def check_task_chunk(task_chunk: Any) -> int | None:
    if task_chunk is None:
        return None
    return check_positive_int("task_chunk", task_chunk)


def resolve_task_chunk(value: Any, backend: str | None = None) -> int | None:
    """A task-batching strategy from a config value: ``None`` means vmap over all tasks.

    ``"auto"``: ``lax.map`` one task at a time on CPU (per-task conv weights:
    faster than vmap and ~5x less memory, benchmarks/README.md) and ``vmap``
    on accelerators. ``"vmap"``: vmap. An int (or its string): chunks of that
    many tasks, vmapped inside a chunk.
    """
    if value == "auto":
        return 1 if (backend or jax.default_backend()) == "cpu" else None
    if value in (None, "vmap"):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"task_chunk must be 'auto', 'vmap' or a positive int, got {value!r}.")
    return check_task_chunk(value)


def batch_over_tasks(task_fn: Callable, meta_params: Any, tasks: Task, task_chunk: int | None) -> tuple[Any, Metrics]:
    """Mean over the task axis of ``task_fn(meta_params, task)``.

    ``task_chunk=None`` vmaps over the whole batch; an int runs ``lax.map``
    over chunks of that many tasks (vmapped inside a chunk), trading speed for
    memory and, on CPU, avoiding batched per-task weights where they are slow.
    """
    fn = lambda task: task_fn(meta_params, task)  # noqa: E731
    if task_chunk is None:
        out = jax.vmap(fn)(tasks)
    else:
        out = jax.lax.map(fn, tasks, batch_size=task_chunk)
    return jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), out)


def make_adapt(
    loss: Callable,
    inner_opt_of: Callable[[Any], optax.GradientTransformation],
    model_params: Callable,
    head: Any,
    num_inner_steps: int,
    inner_batch_size: int | None,
    gradient: AbstractMetaGradient,
) -> Callable[..., InnerResult]:
    """The learners' ``adapt(meta_params, support, *, num_steps, eval_fn, batch_size)``."""

    def adapt(meta_params, support, *, num_steps=None, eval_fn=None, batch_size=AS_TRAINED) -> InnerResult:
        params = model_params(meta_params)
        mask = None if head is None else select_mask(params, head)
        steps = num_inner_steps if num_steps is None else num_steps
        size = inner_batch_size if batch_size is AS_TRAINED else batch_size
        return gradient.inner_loop(
            loss, inner_opt_of(meta_params), params, support, steps, mask=mask, eval_fn=eval_fn, batch_size=size
        )

    return adapt


def task_metrics(query_loss: jax.Array, support_losses: jax.Array, aux: dict[str, jax.Array]) -> Metrics:
    """Per-task metrics: post-adaptation query loss, support loss before adapting, ``query_<aux>``."""
    return {"query_loss": query_loss, "support_loss": support_losses[0], **{f"query_{k}": v for k, v in aux.items()}}


def make_meta_grad(task_direction: Callable, task_spec: Task | None, task_chunk: int | None) -> Callable:
    """``meta_grad(meta_params, tasks)``: check the batch at trace time, then average ``task_direction``."""

    def meta_grad(meta_params, tasks):
        check_task(tasks, "tasks", batched=True, spec=task_spec)
        return batch_over_tasks(task_direction, meta_params, tasks, task_chunk)

    return meta_grad


def post_adaptation_risk(learner: MetaLearner, meta_params: Any, tasks: Task) -> jax.Array:
    """Query loss after the learner's inner loop, for every task of a batch (shape ``(num_tasks,)``)."""

    def one(task):
        res = learner.adapt(meta_params, task.support)
        return learner.query_loss(res.params, task.query, task.support)[0]

    return jax.vmap(one)(tasks)


def gradient_learner(
    *,
    name: str,
    loss_fn: Callable,
    has_aux: bool,
    query_loss_fn: Callable | None,
    num_inner_steps: int,
    gradient: AbstractMetaGradient,
    inner_opt_of: Callable[[Any], optax.GradientTransformation],
    init: Callable,
    model_params: Callable,
    head: Any,
    task_chunk: int | None,
    task_spec: Task | None = None,
    inner_batch_size: int | None = None,
) -> MetaLearner:
    """Build a learner whose direction is the gradient of the post-adaptation query loss.

    Args:
      inner_opt_of: ``inner_opt_of(meta_params) -> GradientTransformation``;
        Meta-SGD builds its optimiser from learned rates held in the
        meta-parameters, the others ignore the argument.
      init / model_params: meta-parameter wrapping (identity for MAML).
      head: ``None`` (adapt everything) or a selector of the adapted subtree.
    """
    num_inner_steps = check_positive_int("num_inner_steps", num_inner_steps)
    if inner_batch_size is not None:
        check_positive_int("inner_batch_size", inner_batch_size)
    task_chunk = check_task_chunk(task_chunk)
    loss = normalize_loss(loss_fn, has_aux)
    qloss = query_loss_from(loss_fn, query_loss_fn, has_aux)

    adapt = make_adapt(loss, inner_opt_of, model_params, head, num_inner_steps, inner_batch_size, gradient)

    def objective(meta_params, task):
        res = adapt(meta_params, task.support)
        qval, aux = qloss(res.params, task.query, task.support)
        return qval, (aux, res.losses)

    def task_direction(meta_params, task):
        check_task(task, "task", spec=task_spec)
        (qval, (aux, losses)), grads = jax.value_and_grad(objective, has_aux=True)(meta_params, task)
        return grads, task_metrics(qval, losses, aux)

    return MetaLearner(
        init=init,
        model_params=model_params,
        adapt=adapt,
        task_direction=task_direction,
        meta_grad=make_meta_grad(task_direction, task_spec, task_chunk),
        query_loss=qloss,
        name=name,
        num_inner_steps=num_inner_steps,
    )


def identity(x):
    return x
