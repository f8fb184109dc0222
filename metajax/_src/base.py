"""Core types of metajax: tasks, losses, learners and the meta-training state.

Everything is a pytree. A *batch* is any pytree whose leaves share a leading
example axis (usually ``(x, y)``); a :class:`Task` is a ``(support, query)``
pair of batches; a task batch is a :class:`Task` whose leaves carry one more
leading axis, the task axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import optax

Params = Any
"""A pytree of model parameters."""
MetaParams = Any
"""A pytree of meta-parameters (model parameters plus, e.g., Meta-SGD rates)."""
Batch = Any
"""A pytree of arrays sharing a leading example axis, usually ``(x, y)``."""
Aux = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Task(NamedTuple):
    """One task: a support batch to adapt on and a query batch to score on.

    For a task batch every leaf carries a leading task axis in front of the
    example axis.
    """

    support: Batch
    query: Batch


class LossFn(Protocol):
    """``loss_fn(params, batch) -> loss`` or ``(loss, aux)`` with ``has_aux``."""

    def __call__(self, params: Params, batch: Batch) -> Any: ...


class QueryLossFn(Protocol):
    """``query_loss_fn(params, query, support) -> (loss, aux)``.

    Gives the query loss access to the task's support batch, which
    non-transductive batch normalisation needs (query examples are normalised
    with support statistics).
    """

    def __call__(self, params: Params, query: Batch, support: Batch) -> tuple[jax.Array, Aux]: ...


class InnerResult(NamedTuple):
    """What an inner loop returns.

    Attributes:
      params: the adapted model parameters (the full pytree).
      losses: support loss before each inner step, shape ``(num_steps,)``.
      trace: ``eval_fn`` evaluated before every step and after the last one,
        leading axis ``num_steps + 1``; ``None`` when no ``eval_fn`` was given.
    """

    params: Params
    losses: jax.Array
    trace: Any
    state: Any = None
    """The model state after the inner loop (models with state, :func:`~metajax.maml_plus_plus`); else ``None``."""


class StatefulLossFn(Protocol):
    """``loss_fn(params, state, batch, step, key) -> (loss, new_state)``; ``(loss, (new_state, aux))`` with ``has_aux``.

    The loss of a model with state (batch-norm running statistics, per-step parameters) or randomness (dropout):
    ``state`` is the model state before the call and ``new_state`` after it, ``step`` the inner step (a traced
    int32 scalar, for per-step parameters and statistics) and ``key`` a PRNG key (``None`` when the run has no key).
    """

    def __call__(self, params: Params, state: Any, batch: Batch, step: jax.Array, key: Any) -> Any: ...


class MetaContext(NamedTuple):
    """What every learner's meta-gradient receives besides the meta-parameters and the task batch.

    Learners without model state or randomness ignore it; :func:`~metajax.make_meta_step` builds it from the
    :class:`MetaState`, so one call ``meta_grad(meta_params, tasks, context)`` serves every learner.

    Attributes:
      step: the outer step (an int32 scalar): schedules such as the multi-step-loss weights and the
        derivative-order switch read it.
      model_state: the model state shared by all tasks (e.g. running statistics), or ``None``.
      task_keys: one PRNG key per task (leading task axis), or ``None`` for a run without randomness.
    """

    step: Any = 0
    model_state: Any = None
    task_keys: Any = None


class MetaLearner(NamedTuple):
    """An algorithm: a named tuple of pure functions built by a factory, with one calling convention.

    Every learner, with or without model state, takes the same arguments; a learner whose model has no state
    ignores the model state and the keys (they stay ``None``).

    Attributes:
      init: ``init(params) -> meta_params`` wraps model parameters into the
        algorithm's meta-parameters (identity except for Meta-SGD and MAML++).
      model_params: ``model_params(meta_params) -> params``, the initial model.
      adapt: ``adapt(meta_params, support, *, model_state=None, key=None, num_steps=None, eval_fn=None,
        batch_size=...) -> InnerResult`` runs the inner loop on one task. Its derivative with
        respect to ``meta_params`` is the one the algorithm's meta-gradient
        choice prescribes. ``InnerResult.state`` is the model state after the loop.
      task_direction: ``task_direction(meta_params, task, context=None) -> (direction, metrics, model_state)``
        for one task: the meta-gradient (MAML family) or ``params - adapted`` (Reptile), a pytree shaped like
        ``meta_params``; ``context`` is a :class:`MetaContext` whose ``task_keys`` holds this task's key.
      meta_grad: ``meta_grad(meta_params, tasks, context=None) -> (direction, metrics, model_state)``
        averaged over a task batch (leading task axis); ``model_state`` is the task-averaged model state after
        the inner loops (``None`` without one).
      query_loss: ``query_loss(params, query, support, state=None, step=None, key=None) -> (loss, aux)`` used
        to score adapted parameters (``state`` the model state after adapting; ``step`` the last inner step).
      name: the algorithm's name.
      num_inner_steps: the inner steps used in training (and, by default, in
        evaluation).
    """

    init: Callable[[Params], MetaParams]
    model_params: Callable[[MetaParams], Params]
    adapt: Callable[..., InnerResult]
    task_direction: Callable[..., tuple[Any, Metrics, Any]]
    meta_grad: Callable[..., tuple[Any, Metrics, Any]]
    query_loss: Callable[..., tuple[jax.Array, Aux]]
    name: str
    num_inner_steps: int


class MetaState(NamedTuple):
    """Outer-loop state: the outer optimiser's state, the step count, the model state and the run's key.

    Attributes:
      opt_state: the outer optimiser's state.
      step: meta-steps taken (int32 scalar).
      model_state: the model state shared by all tasks (running statistics), ``None`` without one.
      key: the run's PRNG key (the tasks of meta-step ``s`` get ``split(fold_in(key, s), num_tasks)``), ``None``
        without one.
    """

    opt_state: optax.OptState
    step: jax.Array
    model_state: Any = None
    key: Any = None


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as int or raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | jax.numpy.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def check_learning_rate(name: str, value: Any) -> None:
    """Raise ``ValueError`` if a static learning rate is negative or non-finite.

    Traced values, callables (schedules) and arrays with more than one element
    are accepted as they are; a learning-rate pytree (Meta-SGD) is checked leaf
    by leaf when concrete.
    """
    if callable(value):
        return
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r} ({type(value).__name__}).")
    leaves = jax.tree_util.tree_leaves(value)
    if not leaves:
        raise ValueError(f"{name} must be a finite number >= 0, got an empty value {value!r}.")
    for leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            continue
        if isinstance(leaf, bool | str | bytes):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r} (a {type(leaf).__name__}).")
        try:
            import numpy as np

            arr = np.asarray(leaf, dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.") from err
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite, got {value!r}.")
        if np.any(arr < 0):
            raise ValueError(f"{name} must be >= 0, got {value!r}.")


def take_leading(tree: Any, start: int, num: int) -> Any:
    """Entries ``start .. start + num`` of every leaf's leading (task) axis."""
    return jax.tree_util.tree_map(lambda x: x[start : start + num], tree)


def pad_leading(tree: Any, size: int) -> Any:
    """Pad every leaf's leading (task) axis to ``size`` by repeating its last entry (no copy when it fits).

    Evaluation pads a batch of tasks to a fixed call size or to a multiple of the device count this way and
    drops the padded results: a repeated task is a valid task, so the padding computes nothing undefined.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    num = leaves[0].shape[0] if leaves else 0
    if num >= size:
        return tree
    return jax.tree_util.tree_map(
        lambda x: jax.numpy.concatenate([x, jax.numpy.repeat(x[-1:], size - num, axis=0)]), tree
    )
