"""Process start-up before JAX runs: pin cores, split the CPU into task streams, enable the compilation cache.

These must run before JAX computes anything (JAX fixes its CPU device count and thread pool on first use), so
the commands call them first and import the rest of the application afterwards.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")


def pin_cpu_threads(n: int) -> str:
    """Restrict this process to ``n`` cores before JAX starts its CPU runtime.

    Small workloads run faster on one core than spread over two (XLA's
    intra-op threads cost more in synchronisation than they gain). Skipped when
    an accelerator plugin is installed (the host CPU count is then not the
    bottleneck) or where the OS has no affinity call.
    """
    if n <= 0:
        return "all cores"
    accelerator = _accelerator_reason()
    if accelerator:
        return f"all cores ({accelerator})"
    if not hasattr(os, "sched_setaffinity"):
        return "all cores (no sched_setaffinity on this OS)"
    cores = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cores)
    return f"cores {cores}"


def split_cpu_streams(config: Any) -> str:
    """Split the CPU backend into the config's CPU task streams before JAX starts (after pinning); a log phrase.

    How many: :func:`~metajax._src.app.runtime.host_cpu_streams` (one per core for ``runtime.cpu_streams`` 0);
    training shards its meta-batch over :func:`~metajax._src.app.runtime.planned_cpu_streams` of them, evaluation
    its tasks over all. Nothing happens when JAX will run on an accelerator.
    """
    from metajax._src.app.runtime import host_cpu_streams, planned_cpu_streams
    from metajax._src.sharding import use_cpu_streams

    runtime, meta_batch = config.get("runtime", {}), config.data.meta_batch_size
    n, train = host_cpu_streams(runtime, meta_batch), planned_cpu_streams(runtime, meta_batch)
    if n == 1 or _accelerator_reason():
        return ""
    phrase = f", {n} CPU task streams"
    if train < n:
        phrase += (
            f" (evaluation; training runs {'one program' if train == 1 else f'{train} streams'}: "
            f"its meta-batch of {meta_batch} tasks does not split over {n})"
        )
    try:
        use_cpu_streams(n)
    except RuntimeError:  # called in a process where JAX already runs (cli.main from Python, a notebook)
        import jax

        if len(jax.devices()) >= n and jax.default_backend() == "cpu":
            return phrase
        return ", one program over all tasks (JAX had started before the CPU could be split into task streams)"
    return phrase


def _accelerator_reason() -> str | None:
    """Why JAX will not run on the CPU (JAX_PLATFORMS names another platform, or an accelerator plugin is
    installed and JAX_PLATFORMS does not force cpu), or ``None`` when it will."""
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms not in ("", "cpu"):
        return "JAX_PLATFORMS is not cpu"
    if platforms != "cpu" and any(importlib.util.find_spec(p) is not None for p in ACCELERATOR_PLUGINS):
        return "an accelerator plugin is installed"
    return None


def use_compile_cache(value: str | None) -> str:
    """Turn on the persistent compilation cache (``--compile-cache`` / ``$METAJAX_COMPILE_CACHE``); a log phrase."""
    from metajax._src.compile_cache import enable_compilation_cache

    where = enable_compilation_cache(value)
    return "no compilation cache" if where is None else f"compilation cache {where}"
