"""Fit a training run to a memory budget: choose the task chunk and the gradient's rematerialisation.

``runtime.memory_plan = "auto"`` (or ``"chunk"``) asks ``metajax train`` to pick, before it trains, how the
meta-batch is split into ``lax.map`` chunks (``data.task_chunk``) and, for ``"auto"``, whether exact
meta-gradients rematerialise the inner loop (``inner.gradient``: ``exact``, then ``exact_remat_dots``, then
``exact_remat``). Both decide how the same meta-gradient is computed, never which one: the planner never
switches to first-order gradients or changes the meta-batch.

The rule prefers no recomputation: the first gradient strategy of the ladder whose one-task program fits is
kept, with the largest chunk (a divisor of the tasks each device holds) that fits. Chunks only serialise work;
rematerialisation adds a forward pass per inner step. Sizes come from XLA's memory analysis of the compiled
training step (compile only, nothing runs): a chunk of 1 and of 2 tasks give the cost of one more task and what
is fixed, the largest chunk is predicted from them and its program compiled to confirm it (smaller chunks are
tried when it does not fit).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metajax._src.memory import MemoryEstimate, available_bytes

MODES = ("off", "chunk", "auto")
# exact meta-gradients, from least to most recomputation (the same gradient up to float rounding)
REMAT_LADDER = ("exact", "exact_remat_dots", "exact_remat")
# the algorithms whose inner.gradient chooses how exact meta-gradients are computed
GRADIENT_ALGORITHMS = ("maml", "meta_sgd", "anil", "mamlpp")
PLAN_FILE = "memory_plan.json"
GB = 1e9
# share of the free memory a plan may use when no budget is given (the memory check's margin)
FREE_FRACTION = 0.9


def size(n: float) -> str:
    """Bytes as GB (10^9) from 1 GB up, MB (10^6) from 1 MB up, else kB."""
    if n >= GB:
        return f"{n / GB:.2f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One compiled candidate: its gradient strategy, tasks per chunk, and XLA's peak estimate in bytes."""

    gradient: str | None
    chunk: int
    peak_bytes: int
    compile_s: float


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """What the planner chose and why.

    Attributes:
      mode: ``"chunk"`` or ``"auto"``.
      requested_gb: ``runtime.memory_budget_gb`` as given (``None``: the free memory).
      budget_bytes: the bytes the training step may use.
      tasks: tasks each device holds per meta-step.
      gradient: the chosen ``inner.gradient`` (``None``: the algorithm has none).
      chunk: tasks per ``lax.map`` chunk (``tasks``: all vmapped at once, ``data.task_chunk = "vmap"``).
      peak_bytes: XLA's estimate of the chosen program.
      trials: every program compiled to decide.
    """

    mode: str
    requested_gb: float | None
    budget_bytes: int
    tasks: int
    gradient: str | None
    chunk: int
    peak_bytes: int
    trials: tuple[Trial, ...]

    @property
    def task_chunk(self) -> str:
        """The value for ``data.task_chunk`` (a config string: ``"vmap"`` or the chunk's digits)."""
        return "vmap" if self.chunk == self.tasks else str(self.chunk)

    def summary(self) -> str:
        how = "all vmapped at once" if self.chunk == self.tasks else f"in chunks of {self.chunk} (lax.map)"
        grad = f"inner.gradient={self.gradient}, " if self.gradient else ""
        tried = "; ".join(
            f"{t.gradient + ' ' if t.gradient else ''}chunk {t.chunk}: {size(t.peak_bytes)}" for t in self.trials
        )
        return (
            f"{grad}{self.tasks} tasks per device {how}: XLA estimates {size(self.peak_bytes)} of a "
            f"{size(self.budget_bytes)} budget (compiled {tried})"
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["trials"] = [dataclasses.asdict(t) for t in self.trials]
        d["task_chunk"] = self.task_chunk
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemoryPlan:
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        kw["trials"] = tuple(Trial(**t) for t in d["trials"])
        plan = cls(**kw)
        if plan.mode not in MODES[1:] or not 1 <= plan.chunk <= plan.tasks or plan.tasks % plan.chunk:
            raise ValueError(f"not a memory plan: {d!r}")
        return plan


def memory_settings(config: Any) -> tuple[str, float | None]:
    """``runtime.memory_plan`` and ``runtime.memory_budget_gb`` of a config, checked (``ValueError`` names the key)."""
    rt = config.get("runtime", {})
    mode = rt.get("memory_plan", "off")
    if mode not in MODES:
        raise ValueError(f"runtime.memory_plan must be one of {MODES}, got {mode!r}.")
    budget = rt.get("memory_budget_gb", None)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0):
        raise ValueError(f"runtime.memory_budget_gb must be a number of GB (10^9 bytes) > 0 or None, got {budget!r}.")
    if budget is not None and mode == "off":
        raise ValueError(
            f"runtime.memory_budget_gb={budget} is used by the memory planner only: add "
            "--set runtime.memory_plan=auto (chunk and rematerialisation) or =chunk (chunk only)."
        )
    return mode, None if budget is None else float(budget)


def gradient_ladder(config: Any, mode: str) -> tuple[str | None, ...]:
    """The gradient strategies the planner may choose from, in order of preference."""
    if config.algorithm not in GRADIENT_ALGORITHMS:
        return (None,)
    configured = config.inner.get("gradient", "exact")
    if mode == "auto" and configured == "exact":
        return REMAT_LADDER
    return (configured,)


def budget_bytes(requested_gb: float | None, available: Callable[[], int | None] = available_bytes) -> int:
    """The bytes a plan may use: the budget asked for, else 90 % of the free memory."""
    if requested_gb is not None:
        return int(requested_gb * GB)
    free = available()
    if free is None:
        raise ValueError(
            "runtime.memory_plan: the free memory of this device is unknown; give the budget with "
            "--set runtime.memory_budget_gb=GB."
        )
    return int(FREE_FRACTION * free)


def divisors(n: int) -> list[int]:
    """Divisors of ``n``, largest first."""
    return sorted((d for d in range(1, n + 1) if n % d == 0), reverse=True)


def plan(
    estimate: Callable[[str | None, int], MemoryEstimate | None],
    gradients: tuple[str | None, ...],
    tasks: int,
    budget: int,
    mode: str = "auto",
    requested_gb: float | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> MemoryPlan:
    """Choose a gradient strategy and a chunk of ``tasks`` whose training step fits ``budget`` bytes.

    Args:
      estimate: ``estimate(gradient, chunk)``, XLA's estimate of the training step with that strategy and
        ``chunk`` tasks per ``lax.map`` step (``chunk == tasks``: vmapped at once).
      gradients: strategies in order of preference (``(None,)``: the algorithm has no choice).
      tasks: tasks per device per meta-step.
      budget: bytes the step may use.
      log: called with a line per compiled candidate.

    Raises:
      MemoryError: not even one task at a time with the most frugal strategy fits.
    """
    trials: list[Trial] = []
    known: dict[tuple[str | None, int], int] = {}

    def peak(gradient: str | None, chunk: int) -> int:
        if (gradient, chunk) not in known:
            t = time.perf_counter()
            est = estimate(gradient, chunk)
            if est is None:
                raise ValueError(
                    "runtime.memory_plan: this backend gives no memory estimate of a compiled program; set "
                    "data.task_chunk and inner.gradient yourself and runtime.memory_plan='off'."
                )
            trial = Trial(gradient, chunk, est.peak_bytes, round(time.perf_counter() - t, 1))
            trials.append(trial)
            known[gradient, chunk] = est.peak_bytes
            log(
                f"{gradient + ', ' if gradient else ''}{chunk} task{'s' * (chunk > 1)} per chunk: "
                f"{size(est.peak_bytes)} (compiled in {trial.compile_s:.0f} s)"
            )
        return known[gradient, chunk]

    def chosen(gradient: str | None, chunk: int) -> MemoryPlan:
        return MemoryPlan(mode, requested_gb, budget, tasks, gradient, chunk, known[gradient, chunk], tuple(trials))

    for gradient in gradients:
        one = peak(gradient, 1)
        if one > budget:
            continue
        if tasks == 1:
            return chosen(gradient, 1)
        two = peak(gradient, 2) if tasks % 2 == 0 else None
        if two is not None and two > budget:
            return chosen(gradient, 1)
        if two is None:  # an odd number of tasks: the next divisor above 1 is tried directly
            per_task, fixed = None, None
        else:
            per_task = max(two - one, 1)
            fixed = one - per_task
        largest = tasks if per_task is None else min(tasks, math.floor((budget - fixed) / per_task))
        for chunk in divisors(tasks):
            if chunk <= 1:
                break
            if chunk > largest and (gradient, chunk) not in known:
                continue
            if peak(gradient, chunk) <= budget:
                return chosen(gradient, chunk)
        return chosen(gradient, 2 if two is not None else 1)
    frugal = gradients[-1]
    raise MemoryError(
        f"the training step does not fit the memory budget of {size(budget)} even one task at a time"
        f"{' with inner.gradient=' + frugal if frugal else ''}: XLA estimates {size(known[frugal, 1])}. "
        "Raise runtime.memory_budget_gb if the device has more, or use first-order gradients (algorithm "
        "fomaml), iMAML (memory flat in the inner steps), fewer inner steps or a smaller model."
    )


def planned_config(config: Any, chosen: MemoryPlan) -> Any:
    """A copy of ``config`` with the plan's ``data.task_chunk`` and ``inner.gradient``."""
    out = config.copy_and_resolve_references()
    out.data.task_chunk = chosen.task_chunk
    if chosen.gradient is not None:
        out.inner.gradient = chosen.gradient
    return out


def read_plan(run_dir: Path) -> MemoryPlan | None:
    """The plan recorded in a run directory (``None``: none, or unreadable)."""
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return MemoryPlan.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None
