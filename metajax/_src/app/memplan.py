"""``runtime.memory_plan``: the config side of fitting a training run to a memory budget.

``runtime.memory_plan = "auto"`` asks ``metajax train`` to choose, before it trains, how the meta-batch is split
into ``lax.map`` chunks (``data.task_chunk``) and whether exact meta-gradients rematerialise the inner loop
(``inner.gradient``: ``exact``, then ``exact_remat_dots``, then ``exact_remat``); ``"chunk"`` chooses the chunk
only. Both decide how the same meta-gradient is computed, never which one: the planner never switches to
first-order gradients or changes the meta-batch. The rule is :func:`~metajax._src.memory.plan_memory`'s; the
choice is recorded in the run directory (:data:`PLAN_FILE`) and kept when the run resumes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metajax._src.app.algorithms import algorithm_spec
from metajax._src.memory import GB, REMAT_LADDER, MemoryPlan, available_bytes

MODES = ("off", "chunk", "auto")
PLAN_FILE = "memory_plan.json"
# share of the free memory a plan may use when no budget is given (the memory check's margin)
FREE_FRACTION = 0.9


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
    """The gradient strategies the planner may choose from, in order of preference (``(None,)``: no choice)."""
    if not algorithm_spec(config.algorithm).takes_gradient:  # its inner.gradient chooses no strategy
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


def planned_config(config: Any, chosen: MemoryPlan) -> Any:
    """A copy of ``config`` with the plan's ``data.task_chunk`` (``"vmap"`` or the chunk) and ``inner.gradient``."""
    out = config.copy_and_resolve_references()
    out.data.task_chunk = "vmap" if chosen.task_chunk is None else str(chosen.task_chunk)
    if chosen.gradient is not None:
        out.inner.gradient = chosen.gradient
    return out


def plan_digest(record: dict[str, Any]) -> str:
    """SHA-256 of a plan record (everything in it but this digest)."""
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def plan_record(chosen: MemoryPlan, mode: str, requested_gb: float | None) -> dict[str, Any]:
    """What :data:`PLAN_FILE` holds: the plan, with the settings that asked for it and their digest."""
    record = {"mode": mode, "requested_gb": requested_gb, **chosen.to_dict()}
    return {**record, "digest": plan_digest(record)}


def read_plan(
    run_dir: Path, config: Any = None, tasks: int | None = None
) -> tuple[MemoryPlan, str, float | None] | None:
    """The plan recorded in a run directory with its mode and requested budget (``None``: there is none).

    A plan file that cannot be read, whose digest does not match its contents (edited or damaged), or, given the
    run's ``config``, that chose a strategy the planner may not choose for it (``inner.gradient`` outside
    :func:`gradient_ladder`: the planner never changes which meta-gradient is computed), or, given ``tasks``
    (per device), that planned another number, raises ``ValueError`` naming the file. A plan written before
    plans had a digest is accepted when it passes the checks against ``config``.
    """
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return None

    def bad(why: str) -> ValueError:
        return ValueError(
            f"{path}: {why}. The run computes as its plan says; restore the file, or delete it to plan again "
            "(the same meta-gradient, possibly computed in other chunks and rounded differently)."
        )

    try:
        d = json.loads(path.read_text())
        if d["mode"] not in MODES[1:]:
            raise ValueError(f"mode {d['mode']!r}")
        plan = MemoryPlan.from_dict(d)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise bad(f"not a readable memory plan ({type(err).__name__}: {err})") from None
    if "digest" in d and d["digest"] != plan_digest(d):
        raise bad("its digest does not match its contents (the file was edited or damaged)")
    if config is not None:
        ladder = gradient_ladder(config, d["mode"])
        if plan.gradient not in ladder:
            allowed = " or ".join(repr(g) for g in ladder)
            raise bad(f"it says gradient {plan.gradient!r}, but this run's planner may choose only {allowed}")
    if tasks is not None and plan.tasks != tasks:
        raise bad(
            f"it plans {plan.tasks} tasks per device, but this run has {tasks} (data.meta_batch_size over the devices)"
        )
    return plan, d["mode"], d["requested_gb"]
