"""Will it fit? XLA's memory analysis of a compiled step, before anything runs.

Compiling allocates nothing on the device: XLA's buffer assignment already
knows the size of the arguments, the outputs and the temporaries of the
program. :func:`estimate` reads it from a compiled function and
:func:`check_fits` compares it with what the device has free, so an
out-of-memory configuration (exact MAML with many inner steps, a big
meta-batch under ``vmap``) is refused with advice before it runs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

MB = 2**20


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """XLA's buffer sizes for one compiled program, in bytes.

    ``peak_bytes`` = arguments + outputs + temporaries - aliased (donated
    arguments reused as outputs): what the program holds at once at most.
    Host-side copies (the Python process's own data) are not included.
    """

    argument_bytes: int
    output_bytes: int
    temp_bytes: int
    alias_bytes: int
    generated_code_bytes: int

    @property
    def peak_bytes(self) -> int:
        return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes

    def times(self, n: int) -> MemoryEstimate:
        """The estimate for ``n`` devices that share one memory (CPU task streams): XLA's analysis of a
        sharded program is per device, and on the host every device's buffers sit in the same RAM."""
        return MemoryEstimate(*(n * v for v in dataclasses.astuple(self)))

    def summary(self) -> str:
        return (
            f"{self.peak_bytes / MB:,.0f} MB (arguments {self.argument_bytes / MB:,.0f} MB, "
            f"outputs {self.output_bytes / MB:,.0f} MB, temporaries {self.temp_bytes / MB:,.0f} MB, "
            f"donated {self.alias_bytes / MB:,.0f} MB)"
        )


def compiled_memory(compiled: Any) -> MemoryEstimate | None:
    """The memory analysis of a ``jax.stages.Compiled`` (``jax.jit(f).lower(*args).compile()``).

    Returns ``None`` when the backend does not report one.
    """
    mem = compiled.memory_analysis()
    if mem is None:
        return None
    return MemoryEstimate(
        argument_bytes=int(mem.argument_size_in_bytes),
        output_bytes=int(mem.output_size_in_bytes),
        temp_bytes=int(mem.temp_size_in_bytes),
        alias_bytes=int(mem.alias_size_in_bytes),
        generated_code_bytes=int(mem.generated_code_size_in_bytes),
    )


def estimate_memory(fn: Any, *args: Any, **kwargs: Any) -> MemoryEstimate | None:
    """Compile ``jax.jit(fn)`` for ``args`` (without running it) and return its estimate.

    >>> import jax.numpy as jnp
    >>> est = estimate_memory(lambda x: (x @ x.T).sum(), jnp.ones((256, 64)))
    >>> est.temp_bytes >= 0
    True
    """
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    return compiled_memory(jitted.lower(*args, **kwargs).compile())


def available_bytes(device: Any = None) -> int | None:
    """Free memory of ``device`` (default: the first device) in bytes, if known.

    Accelerators: ``bytes_limit - bytes_in_use`` from ``device.memory_stats()``.
    CPU: the kernel's ``MemAvailable`` (Linux), else physical memory; the
    environment variable ``METAJAX_MEMORY_LIMIT_MB`` overrides both (for
    shared machines and containers with a cgroup limit).
    """
    override = os.environ.get("METAJAX_MEMORY_LIMIT_MB")
    if override:
        return int(float(override) * MB)
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # noqa: BLE001 - some backends do not implement it
            stats = {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    limit = _cgroup_limit()
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    return min(avail, limit) if limit else avail
    except OSError:
        pass
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return min(phys, limit) if limit else phys
    except (ValueError, OSError, AttributeError):
        return limit


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


ADVICE = (
    "To fit: lower data.meta_batch_size; map over tasks in smaller chunks (data.task_chunk=1, or "
    "task_chunk=1 in the learner); rematerialise inner steps (inner.gradient='exact_remat', or "
    "gradient=metajax.Exact(remat=True)); use iMAML (memory flat in the number of inner steps) or "
    "first-order gradients; or fewer inner steps."
)


def check_fits(est: MemoryEstimate | None, what: str, available: int | None = None, fraction: float = 0.9) -> str:
    """Raise ``MemoryError`` if ``est`` needs more than ``fraction`` of the free memory; else a one-line report.

    Args:
      est: from :func:`estimate` (``None``: nothing to check).
      what: names the program in messages (``"the training step"``).
      available: free bytes (default :func:`available_bytes`).
      fraction: share of the free memory the program may use.
    """
    if est is None:
        return f"{what}: the backend gives no memory estimate"
    avail = available_bytes() if available is None else available
    line = f"{what}: XLA estimates {est.summary()}"
    if avail is None:
        return line + "; free memory unknown"
    line += f"; {avail / MB:,.0f} MB free"
    if est.peak_bytes > fraction * avail:
        raise MemoryError(
            f"{what} will not fit: XLA estimates {est.summary()}, more than {fraction:.0%} of the "
            f"{avail / MB:,.0f} MB free on {jax.devices()[0].platform}. {ADVICE} "
            "Set METAJAX_MEMORY_LIMIT_MB to override the free-memory figure."
        )
    return line


def release_host_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    XLA's compiler (LLVM, MLIR) leaves hundreds of MB of freed but unreturned
    heap behind: on the Omniglot MAML step, resident memory drops from ~840 to
    ~500 MB after a trim (benchmarks/README.md). Called after compiling.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return
    trim(0)


def current_rss_mb() -> float | None:
    """The process's resident memory now (Linux), in MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError):
        return None


# exact meta-gradients from least to most recomputation: the same gradient up to float rounding
REMAT_LADDER = ("exact", "exact_remat_dots", "exact_remat")
GB = 1e9


def format_bytes(n: float) -> str:
    """Bytes as GB (10^9) from 1 GB up, MB (10^6) from 1 MB up, else kB."""
    if n >= GB:
        return f"{n / GB:.2f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One compiled candidate of :func:`plan_memory`: gradient strategy, tasks per chunk, XLA's peak in bytes."""

    gradient: str | None
    chunk: int
    peak_bytes: int
    compile_s: float


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """What :func:`plan_memory` chose and the programs it compiled to decide.

    Attributes:
      budget_bytes: the bytes the step may use.
      tasks: tasks per device per meta-step.
      gradient: the chosen gradient strategy (``None``: the learner has no choice).
      chunk: tasks per ``lax.map`` chunk (``tasks``: all vmapped at once).
      peak_bytes: XLA's estimate of the chosen program.
      trials: every candidate compiled, in order.
    """

    budget_bytes: int
    tasks: int
    gradient: str | None
    chunk: int
    peak_bytes: int
    trials: tuple[Trial, ...]

    @property
    def task_chunk(self) -> int | None:
        """The learners' ``task_chunk`` argument: ``None`` (vmap over all tasks) or the chunk."""
        return None if self.chunk == self.tasks else self.chunk

    def summary(self) -> str:
        how = "all vmapped at once" if self.chunk == self.tasks else f"in chunks of {self.chunk} (lax.map)"
        grad = f"gradient {self.gradient}, " if self.gradient else ""
        tried = "; ".join(
            f"{t.gradient + ' ' if t.gradient else ''}chunk {t.chunk}: {format_bytes(t.peak_bytes)}"
            for t in self.trials
        )
        return (
            f"{grad}{self.tasks} tasks per device {how}: XLA estimates {format_bytes(self.peak_bytes)} of a "
            f"{format_bytes(self.budget_bytes)} budget (compiled {tried})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "trials": [dataclasses.asdict(t) for t in self.trials]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemoryPlan:
        """Inverse of :meth:`to_dict` (other keys ignored); ``ValueError`` when it is not a consistent plan."""
        kw = {f.name: d[f.name] for f in dataclasses.fields(cls)}
        kw["trials"] = tuple(Trial(**t) for t in kw["trials"])
        out = cls(**kw)
        whole = isinstance(out.tasks, int) and isinstance(out.chunk, int)
        if not whole or not 1 <= out.chunk <= out.tasks or out.tasks % out.chunk:
            raise ValueError(f"not a memory plan: {d!r}")
        return out


def divisors(n: int) -> list[int]:
    """Divisors of ``n``, largest first."""
    return sorted((d for d in range(1, n + 1) if n % d == 0), reverse=True)


def plan_memory(
    estimate: Callable[[str | None, int], MemoryEstimate | None],
    gradients: Sequence[str | None],
    tasks: int,
    budget: int,
    log: Callable[[str], None] | None = None,
) -> MemoryPlan:
    """Choose a gradient strategy and a chunk of ``tasks`` whose step fits ``budget`` bytes.

    The rule prefers no recomputation: the first strategy in ``gradients`` whose one-task program fits is
    kept, with the largest chunk (a divisor of ``tasks``) that fits, since chunks only serialise work while
    rematerialisation adds a forward pass per inner step. A chunk of 1 and of 2 tasks give the cost of one
    more task and what is fixed; the largest chunk is predicted from them and compiled to confirm it, and
    smaller divisors are tried when it does not fit (XLA's sizes are not exactly linear in the chunk).

    Args:
      estimate: ``estimate(gradient, chunk)``: XLA's estimate of the step with that strategy and ``chunk`` tasks
        per ``lax.map`` step (``chunk == tasks``: all vmapped), e.g. :func:`estimate` of its compiled program.
      gradients: strategies in order of preference, e.g. :data:`REMAT_LADDER` (``(None,)``: no choice).
      tasks: tasks per device per meta-step.
      budget: bytes the step may use.
      log: called with one line per compiled candidate.

    Raises:
      MemoryError: one task at a time with the last strategy does not fit.
      ValueError: the backend gives no estimate.

    >>> from metajax.diagnostics import MemoryEstimate, plan_memory
    >>> cost = {"exact": 50, "exact_remat": 20}  # bytes per task, 100 fixed
    >>> est = lambda g, c: MemoryEstimate(100 + cost[g] * c, 0, 0, 0, 0)
    >>> p = plan_memory(est, ("exact", "exact_remat"), tasks=12, budget=420)
    >>> p.gradient, p.chunk, p.task_chunk
    ('exact', 6, 6)
    """
    trials: dict[tuple[str | None, int], Trial] = {}  # in the order compiled

    def peak(gradient: str | None, chunk: int) -> int:
        if (gradient, chunk) not in trials:
            t = time.perf_counter()
            est = estimate(gradient, chunk)
            if est is None:
                raise ValueError("this backend gives no memory estimate of a compiled program: nothing to plan with")
            trial = trials[gradient, chunk] = Trial(gradient, chunk, est.peak_bytes, round(time.perf_counter() - t, 1))
            if log is not None:
                log(
                    f"{gradient + ', ' if gradient else ''}{chunk} task{'s' * (chunk > 1)} per chunk: "
                    f"{format_bytes(est.peak_bytes)} (compiled in {trial.compile_s:.0f} s)"
                )
        return trials[gradient, chunk].peak_bytes

    def chosen(gradient: str | None, chunk: int) -> MemoryPlan:
        return MemoryPlan(budget, tasks, gradient, chunk, peak(gradient, chunk), tuple(trials.values()))

    for gradient in gradients:
        if peak(gradient, 1) > budget:
            continue
        if tasks == 1:
            return chosen(gradient, 1)
        largest = tasks  # an odd number of tasks: divisors are tried from the top
        if tasks % 2 == 0:
            if peak(gradient, 2) > budget:
                return chosen(gradient, 1)
            one, two = peak(gradient, 1), peak(gradient, 2)  # compiled already
            per_task = max(two - one, 1)
            largest = min(tasks, int((budget - one + per_task) // per_task))
        for chunk in divisors(tasks):
            if chunk == 1:
                break
            if chunk > largest and (gradient, chunk) not in trials:
                continue
            if peak(gradient, chunk) <= budget:
                return chosen(gradient, chunk)
        return chosen(gradient, 1)
    last = gradients[-1]
    raise MemoryError(
        f"the step does not fit the memory budget of {format_bytes(budget)} even one task at a time"
        f"{' with gradient ' + last if last else ''}: XLA estimates {format_bytes(peak(last, 1))}"
    )
