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


def estimate(compiled: Any) -> MemoryEstimate | None:
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


def estimate_fn(fn: Any, *args: Any, **kwargs: Any) -> MemoryEstimate | None:
    """Compile ``jax.jit(fn)`` for ``args`` (without running it) and return its estimate.

    >>> import jax.numpy as jnp
    >>> est = estimate_fn(lambda x: (x @ x.T).sum(), jnp.ones((256, 64)))
    >>> est.temp_bytes >= 0
    True
    """
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    return estimate(jitted.lower(*args, **kwargs).compile())


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
