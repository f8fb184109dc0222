"""Evaluation protocol: post-adaptation loss against the number of inner steps.

For every held-out task the initial parameters are adapted on the support
batch and the query loss is recorded before adaptation and after every step,
in one compiled call for all tasks. Summaries give the mean with a 95%
confidence interval (normal approximation, 1.96 standard errors), the median,
and the count of tasks whose loss diverged (non-finite or above a threshold),
because a few diverging tasks can dominate a mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from metajax._src.base import MetaLearner, Params, Task, check_positive_int, pad_leading, take_leading
from metajax._src.inner import Exact, support_loss
from metajax._src.sharding import shard_task_map


def adaptation_curves(
    adapt: Callable,
    meta_params: Any,
    query_loss: Callable,
    tasks: Task,
    num_steps: int,
    task_chunk: int | None = 100,
    metric: str | None = None,
    mesh: Any = None,
) -> np.ndarray:
    """Query loss (or an aux metric) of every task before and after each of ``num_steps`` inner steps.

    Args:
      adapt: a learner's ``adapt(meta_params, support, *, num_steps, eval_fn)``.
      meta_params: the learner's meta-parameters (or plain parameters).
      query_loss: ``query_loss(params, query, support) -> (loss, aux)``.
      tasks: a task batch.
      num_steps: the largest number of inner steps.
      task_chunk: tasks evaluated together (bounds memory); ``None`` = all.
      metric: ``None`` for the loss, the name of an aux entry of
        ``query_loss`` (e.g. ``"accuracy"``), or ``"all"`` for a dict of the
        loss and every aux entry (one pass).
      mesh: split the tasks over this mesh's devices (:func:`metajax.shard_task_map`); ``None``: one device.

    Returns:
      Array of shape ``(num_tasks, num_steps + 1)``: column ``s`` is the query
      loss (or metric) after ``s`` steps; a dict of such arrays for ``"all"``.
    """
    num_steps = check_positive_int("num_steps", num_steps)

    def measure(p, task):
        loss, aux = query_loss(p, task.query, task.support)
        if metric == "all":
            return {"loss": loss, **aux}
        return loss if metric is None else aux[metric]

    def run(mp, tasks):
        def one(task):
            res = adapt(mp, task.support, num_steps=num_steps, eval_fn=lambda p: measure(p, task))
            return res.trace

        return jax.lax.map(one, tasks, batch_size=task_chunk)

    return jax.tree_util.tree_map(np.asarray, jax.device_get(shard_task_map(run, mesh)(meta_params, tasks)))


def plain_adapter(loss_fn: Callable, inner_opt: optax.GradientTransformation, has_aux: bool = False) -> Callable:
    """An ``adapt`` for plain parameters (baselines: random or pretrained init)."""
    loss = support_loss(loss_fn, has_aux, stateful=False)
    loop = Exact()

    def adapt(params, support, *, num_steps, eval_fn=None, batch_size=None):
        return loop.inner_loop(loss, inner_opt, params, support, num_steps, eval_fn=eval_fn, batch_size=batch_size)

    return adapt


def summarize(curves: np.ndarray, steps: Sequence[int], diverged_above: float = math.inf) -> list[dict[str, Any]]:
    """Per-step statistics of adaptation curves.

    Args:
      curves: ``(num_tasks, num_steps + 1)`` from :func:`adaptation_curves`.
      steps: which step counts to report.
      diverged_above: a task whose loss is non-finite or above this counts as
        diverged.

    Returns:
      One dict per step with ``steps``; ``mean`` and ``ci95`` (1.96 standard
      errors) over the tasks that did not diverge; ``mean_all`` over every
      task (``inf`` if any is non-finite); ``median`` over every task (a
      non-finite loss counts as ``+inf``); ``diverged`` and ``num_tasks``.
    """
    rows = []
    for s in steps:
        if not 0 <= s < curves.shape[1]:
            raise ValueError(f"steps must lie in [0, {curves.shape[1] - 1}], got {s}.")
        col = curves[:, s].astype(np.float64)
        col = np.where(np.isfinite(col), col, np.inf)
        diverged = col > diverged_above
        ok = col[~diverged]
        mean = float(np.mean(ok)) if ok.size else float("nan")
        ci = ci95(ok)
        rows.append(
            {
                "steps": int(s),
                "mean": mean,
                "ci95": ci,
                "mean_all": float(np.mean(col)),
                "median": float(np.median(col)),
                "diverged": int(diverged.sum()),
                "num_tasks": int(col.size),
            }
        )
    return rows


def markdown_table(results: dict[str, list[dict[str, Any]]], metric: str = "MSE") -> str:
    """A markdown table: one row per step count, columns per initialisation.

    Means and intervals are over the tasks that did not diverge; medians over
    all tasks; the diverged count is shown beside them.
    """
    names = list(results)
    head = "| steps | " + " | ".join(f"{n} {metric} mean ± 95% CI | {n} median | {n} diverged" for n in names) + " |"
    sep = "|---|" + "---|---|---|" * len(names)
    lines = [head, sep]
    for i, row in enumerate(results[names[0]]):
        cells = [str(row["steps"])]
        for n in names:
            r = results[n][i]
            cells += [f"{r['mean']:.3f} ± {r['ci95']:.3f}", f"{r['median']:.3f}", f"{r['diverged']}/{r['num_tasks']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def joint_training(
    loss_fn: Callable,
    params: Params,
    sample_tasks: Callable[[jax.Array], Task],
    num_steps: int,
    key: jax.Array,
    opt: optax.GradientTransformation | None = None,
    has_aux: bool = False,
    steps_per_call: int = 1000,
    on_chunk: Callable[[int, int, float], None] | None = None,
) -> Params:
    """The "pretrained" baseline: minimise the loss pooled over tasks, no adaptation.

    Each step draws a task batch and takes an optimiser step on the mean loss
    over the support and query examples of all tasks at the *shared*
    parameters (multi-task or joint training). On sinusoids this learns
    f(x) close to 0, the MAML paper's "pretrained" baseline.

    Args:
      loss_fn: ``loss_fn(params, batch)``.
      params: initial parameters.
      sample_tasks: ``sample_tasks(key) -> Task`` batch.
      num_steps: optimiser steps.
      key: PRNG key.
      opt: optimiser (default Adam 1e-3).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      steps_per_call: steps fused into one compiled call.
      on_chunk: ``on_chunk(done, n, mean_loss)`` after every compiled call of
        ``n`` steps (e.g. to drive a progress bar).

    Returns:
      The trained parameters.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    opt = optax.adam(1e-3) if opt is None else opt
    loss = support_loss(loss_fn, has_aux, stateful=False)

    def pooled(p, tasks):
        per_task = jax.vmap(lambda t: loss(p, None, t.support, 0, None)[0] + loss(p, None, t.query, 0, None)[0])(tasks)
        return 0.5 * jnp.mean(per_task)

    def make(n):
        @jax.jit
        def run(p, s, start):
            def body(carry, i):
                p, s = carry
                value, g = jax.value_and_grad(pooled)(p, sample_tasks(jax.random.fold_in(key, start + i)))
                u, s = opt.update(g, s, p)
                return (optax.apply_updates(p, u), s), value

            (p, s), values = jax.lax.scan(body, (p, s), jnp.arange(n))
            return p, s, jnp.mean(values)

        return run

    steps_per_call = check_positive_int("steps_per_call", steps_per_call)
    state = opt.init(params)
    done = 0
    per_call = min(steps_per_call, num_steps)
    full = make(per_call)
    while done < num_steps:
        n = min(per_call, num_steps - done)
        params, state, value = (full if n == per_call else make(n))(params, state, done)
        done += n
        if on_chunk is not None:
            on_chunk(done, n, float(value))
    return params


def ci95(x: ArrayLike, axis: int | None = None) -> Any:
    """Half-width of the 95 % confidence interval of a mean: 1.96 standard errors (normal approximation).

    ``1.96 * std(x, ddof=1) / sqrt(n)`` over all of ``x`` (a float) or along ``axis`` (an array); ``nan`` for
    fewer than two values. Computed in the dtype of ``x``.

    >>> round(ci95([1.0, 2.0, 3.0]), 4)
    1.1316
    """
    x = np.asarray(x)
    n = x.size if axis is None else x.shape[axis]
    if n < 2:
        return float("nan") if axis is None else np.full(np.delete(x.shape, axis), np.nan)
    half = 1.96 * np.std(x, axis=axis, ddof=1) / math.sqrt(n)
    return float(half) if axis is None else half


def adaptation_scorer(
    learner: MetaLearner,
    query_loss: Callable,
    num_steps: int,
    task_chunk: int | None,
    batch_size: Any = None,
    mesh: Any = None,
    tasks_per_call: int | None = None,
) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """A compiled ``score(meta_params, tasks, on_chunk=None, model_state=None) -> (loss, accuracy)`` per task.

    Every task is adapted for ``num_steps`` steps from ``meta_params`` (and ``model_state``, the model state a
    model with state starts from, e.g. running statistics) and scored by ``query_loss(params, query, support,
    state) -> (loss, aux)`` with the model state after the task's inner loop (a model without state: called as
    ``query_loss(params, query, support)``). Build it once and call it for every evaluation: it compiles on the
    first call for a task-batch shape.
    With a ``mesh`` of several devices (CPU task streams, GPUs) the tasks are split over its devices
    (:func:`metajax.shard_task_map`); every task's numbers come from the same per-task program as on one
    device. With ``tasks_per_call`` a batch of more tasks runs as calls of that many (the last one padded by
    repeating its last task, the padding dropped; rounded up to a multiple of the mesh's devices): one compiled
    program serves every batch size above it (200 validation and 600 test tasks compile once), and
    ``on_chunk(done, total)`` reports after each call.
    """
    tasks_per_call = call_size(tasks_per_call, mesh)

    def run(mp, tasks):
        def one(task):
            meta, model_state = mp  # the query loss reads the model state after adapting (None without one)
            res = learner.adapt(meta, task.support, model_state=model_state, num_steps=num_steps, batch_size=batch_size)
            # a model without state is scored by a query loss that may not take one
            extra = () if res.state is None else (res.state,)
            loss, aux = query_loss(res.params, task.query, task.support, *extra)
            return loss, aux["accuracy"]

        if task_chunk is None:
            return jax.vmap(one)(tasks)
        return jax.lax.map(one, tasks, batch_size=task_chunk)

    score = shard_task_map(run, mesh)

    def in_calls(meta_params, tasks, on_chunk: Callable[[int, int], None] | None = None, model_state: Any = None):
        leaves = jax.tree_util.tree_leaves(tasks)
        total = leaves[0].shape[0] if leaves and leaves[0].ndim else 0
        if total == 0:
            raise ValueError("tasks must hold at least one task along a leading task axis, got none.")
        size = total if tasks_per_call is None or total <= tasks_per_call else tasks_per_call
        outs = []
        for start in range(0, total, size):
            num = min(size, total - start)
            out = score((meta_params, model_state), pad_leading(take_leading(tasks, start, num), size))
            outs.append(out if num == size else take_leading(out, 0, num))
            if on_chunk is not None:
                jax.block_until_ready(outs[-1])
                on_chunk(start + num, total)
        return outs[0] if len(outs) == 1 else jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *outs)

    return in_calls


def call_size(tasks_per_call: int | None, mesh: Any = None) -> int | None:
    """Tasks per evaluation call: ``tasks_per_call`` rounded up to a multiple of the mesh's devices.

    A whole number of tasks per device in every call, so only the last call is padded. ``None``: one call.
    """
    if tasks_per_call is None:
        return None
    check_positive_int("tasks_per_call", tasks_per_call)
    return tasks_per_call if mesh is None else -(-tasks_per_call // mesh.devices.size) * mesh.devices.size


def accuracy_after_adaptation(
    learner: MetaLearner,
    meta_params: Any,
    query_loss: Callable,
    tasks: Task,
    num_steps: int,
    task_chunk: int | None,
    batch_size: Any = None,
    mesh: Any = None,
    tasks_per_call: int | None = None,
    model_state: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-task query (loss, accuracy) after ``num_steps`` inner steps (one-off: see :func:`adaptation_scorer`)."""
    score = adaptation_scorer(learner, query_loss, num_steps, task_chunk, batch_size, mesh, tasks_per_call)
    loss, acc = jax.device_get(score(meta_params, tasks, model_state=model_state))
    return np.asarray(loss), np.asarray(acc)


def mean_ci(x: ArrayLike) -> tuple[float, float]:
    """Mean and the 95 % confidence half-width (:func:`ci95`) of a 1-D sample, in float64.

    >>> mean, half = mean_ci([1.0, 2.0, 3.0])
    >>> mean, round(half, 4)
    (2.0, 1.1316)
    """
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(ci95(x))
