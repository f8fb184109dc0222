"""Shape checks on tasks and task batches, run at trace time (before compiling)."""

from __future__ import annotations

from typing import Any

import jax

from metajax._src.base import Task


def _shapes(tree: Any) -> list[tuple[str, tuple[int, ...]]]:
    from metajax._src.inner import path_str

    return [
        (path_str(p), tuple(getattr(leaf, "shape", ()))) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def task_spec_of(task: Task) -> Task:
    """The per-task ``ShapeDtypeStruct`` pytree of one (unbatched) task."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), task)


def check_task(task: Any, argname: str = "task", batched: bool = False, spec: Task | None = None) -> int | None:
    """Check a task (or a task batch) and return the task-axis size.

    A task is a :class:`Task` (support, query). Inside each of them every leaf
    has the same leading example axis; support and query leaves correspond one
    to one and agree on every dimension after the example axis. A task batch
    adds a leading task axis that every leaf shares.

    Args:
      task: the task or task batch.
      argname: name used in error messages.
      batched: whether a leading task axis is expected.
      spec: optional per-task :class:`Task` of arrays or ``ShapeDtypeStruct``;
        when given, the (per-task) shapes must equal it exactly, which is the
        only way to tell a missing task axis from a batch of one-example tasks.

    Returns:
      The task-axis size when ``batched`` else ``None``.

    Raises:
      ValueError: naming ``argname``, what was expected and what was received.
    """
    if not isinstance(task, Task):
        raise ValueError(f"{argname} must be a metajax.Task(support, query), got {type(task).__name__}.")
    sup, qry = _shapes(task.support), _shapes(task.query)
    if not sup or not qry:
        raise ValueError(
            f"{argname}: support and query must each hold at least one array; got support {sup}, query {qry}."
        )
    if len(sup) != len(qry) or [p for p, _ in sup] != [p for p, _ in qry]:
        raise ValueError(
            f"{argname}: support and query must have the same structure, got support {sup} and query {qry}."
        )
    lead = 2 if batched else 1
    what = "(meta_batch, examples, ...)" if batched else "(examples, ...)"
    for part, shapes in (("support", sup), ("query", qry)):
        for path, shape in shapes:
            if len(shape) < lead:
                raise ValueError(
                    f"{argname}.{part}[{path}] has shape {shape}; expected {what}"
                    + (": is the task axis missing?" if batched else ".")
                )
    num_tasks = None
    if batched:
        axes = {shape[0] for _, shape in sup + qry}
        if len(axes) != 1:
            raise ValueError(
                f"{argname}: every array of a task batch must share the leading task axis; got support {sup} and "
                f"query {qry}. Is the task axis missing? Expected shapes {what}."
            )
        num_tasks = axes.pop()
        if num_tasks == 0:
            raise ValueError(f"{argname}: a task batch must hold at least one task, got 0 (shapes {sup}).")
    for part, shapes in (("support", sup), ("query", qry)):
        examples = {shape[lead - 1] for _, shape in shapes}
        if len(examples) != 1:
            raise ValueError(
                f"{argname}.{part}: every array must share the example axis (axis {lead - 1}); got {shapes}."
            )
        if examples == {0}:
            raise ValueError(f"{argname}.{part}: each task needs at least one {part} example, got 0 (shapes {shapes}).")
    for (path, s), (_, q) in zip(sup, qry, strict=True):
        if s[lead:] != q[lead:]:
            raise ValueError(
                f"{argname}: support[{path}] has per-example shape {s[lead:]} but query[{path}] has "
                f"{q[lead:]}; they must match."
            )
    if spec is not None:
        want = _shapes(spec)
        got = [(p, s[lead - 1 :]) for p, s in sup + qry]
        want_all = [(p, s) for p, s in want]
        if [s for _, s in got] != [s for _, s in want_all]:
            raise ValueError(
                f"{argname}: per-task shapes {got} do not match the expected task shapes {want_all}"
                + (" (a task batch needs a leading task axis: (meta_batch, examples, ...))." if batched else ".")
            )
    return num_tasks


def check_task_values(tasks: Any, argname: str = "tasks", num_classes: int | None = None) -> None:
    """Check a concrete task (batch) for non-finite inputs and out-of-range labels.

    Runs eagerly on concrete arrays (not inside ``jit``): call it on a sample
    batch before training, as ``metajax train`` does.

    Args:
      tasks: a :class:`Task` or task batch of concrete arrays.
      argname: name used in error messages.
      num_classes: when given, every integer leaf is a label that must lie in
        ``[0, num_classes)``.

    Raises:
      ValueError: naming the offending array, what was expected and what was found.
    """
    import numpy as np

    from metajax._src.inner import path_str

    for path, leaf in jax.tree_util.tree_flatten_with_path(tasks)[0]:
        a = np.asarray(leaf)
        where = f"{argname}[{path_str(path)}]"
        if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            if bad:
                raise ValueError(
                    f"{where} has {bad} non-finite values (NaN or infinity) among {a.size}; the input "
                    "data must be finite."
                )
        elif num_classes is not None and np.issubdtype(a.dtype, np.integer) and a.size:
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"{where} holds labels from {lo} to {hi}; expected labels in [0, {num_classes}) "
                    f"for {num_classes}-way tasks."
                )
