"""Where a run executes, resolved once from a config: meshes, task chunking, evaluation call size, CPU streams.

The ``runtime`` section of a config (``cpu_threads``, ``cpu_streams``, ``devices``, ``distributed``,
``eval_tasks_per_call``) and ``data.task_chunk`` decide where and in what pieces the work runs, never what it
computes. :func:`resolve_runtime` turns them into a :class:`Runtime` of plain values that the rest of the
application passes down; the library below never sees the config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh

from metajax._src.base import check_positive_int
from metajax._src.evaluation import call_size
from metajax._src.learner import resolve_task_chunk
from metajax._src.sharding import check_divisible, cores, is_auto, make_mesh, resolve_cpu_streams

# evaluation runs in calls of this many tasks: validation (200) and test (600) share one compiled program
DEFAULT_EVAL_TASKS_PER_CALL = 100


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A run's execution settings, resolved.

    Attributes:
      mesh: the devices the training task batch is split over (one device: a one-device mesh).
      eval_mesh: the devices evaluation and validation split their tasks over.
      task_chunk: tasks per ``lax.map`` chunk inside a device's share (``None``: ``vmap`` over all).
      eval_tasks_per_call: tasks per evaluation call, a multiple of ``eval_mesh``'s devices (``None``: one
        call for any number of tasks).
    """

    mesh: Mesh
    eval_mesh: Mesh
    task_chunk: int | None
    eval_tasks_per_call: int | None


def resolve_runtime(config: Any) -> Runtime:
    """The :class:`Runtime` of a config; bad values raise ``ValueError`` naming the config key."""
    check_positive_int("data.meta_batch_size", config.data.meta_batch_size)
    try:
        mesh = make_mesh(task_devices(config))
    except ValueError as err:
        raise ValueError(f"runtime.devices: {err}") from None
    check_divisible(config.data.meta_batch_size, mesh, argname="data.meta_batch_size")
    eval_mesh = make_mesh(eval_devices(config))
    per_call = config.get("runtime", {}).get("eval_tasks_per_call", DEFAULT_EVAL_TASKS_PER_CALL)
    if per_call is not None:
        check_positive_int("runtime.eval_tasks_per_call", per_call)
    chunk = resolve_task_chunk(config.data.get("task_chunk", None))
    return Runtime(mesh, eval_mesh, chunk, call_size(per_call, eval_mesh))


def task_devices(config: Any) -> int | None:
    """How many devices the task batch is sharded over: ``runtime.devices``, or on the CPU backend with
    ``runtime.devices = 1``, the CPU task streams (``runtime.cpu_streams``) the host was split into.

    The split itself happens before JAX starts (``metajax train`` calls :func:`metajax.parallel.use_cpu_streams`);
    when it did not (``run`` called from Python without it), the run uses one device.
    """
    rt = config.get("runtime", {})
    n = planned_cpu_streams(rt, config.data.meta_batch_size)
    if n == 1:
        return rt.get("devices", 1)
    if jax.default_backend() != "cpu" or len(jax.devices()) < n:
        return 1
    return n


def eval_devices(config: Any) -> int | None:
    """How many devices evaluation and validation split their tasks over.

    ``runtime.devices`` when it is not 1 (``None`` / -1: all); on the CPU backend with ``runtime.cpu_streams``
    not 1, every CPU device (the streams the host was split into, see :func:`host_cpu_streams`); otherwise
    one. With ``runtime.distributed`` each process evaluates on its own first device (the evaluation tasks are
    host-local arrays).
    """
    rt = config.get("runtime", {})
    if rt.get("distributed", False):
        return 1
    if rt.get("devices", 1) != 1:
        return rt.get("devices", 1)
    if not cpu_streams_apply(rt) or jax.default_backend() != "cpu":
        return 1
    return len(jax.devices())


def planned_cpu_streams(runtime: Any, meta_batch: int) -> int:
    """The CPU task streams a run's ``runtime`` settings ask for (1: none).

    Streams apply only when the task batch would otherwise run on one device: ``runtime.devices = 1``
    and not distributed. Bad values raise ``ValueError`` naming ``runtime.cpu_streams``.
    """
    if not cpu_streams_apply(runtime):
        return 1
    return resolve_cpu_streams(runtime.get("cpu_streams", 1), meta_batch, "runtime.cpu_streams")


def cpu_streams_apply(runtime: Any) -> bool:
    """Whether ``runtime`` asks for CPU task streams: ``cpu_streams`` not 1, ``devices = 1``, not distributed."""
    return (
        runtime.get("cpu_streams", 1) != 1 and runtime.get("devices", 1) == 1 and not runtime.get("distributed", False)
    )


def host_cpu_streams(runtime: Any, meta_batch: int) -> int:
    """How many CPU devices a run's ``runtime`` settings split the host into (1: none).

    The training streams (:func:`planned_cpu_streams`), except that ``cpu_streams`` 0 / ``"auto"`` always
    gives one per core: evaluation and validation, whose tasks are independent, use every stream even when
    the meta-batch does not split that far (Reptile's meta-batch of 3 or 5 on two cores trains as one program
    and still evaluates on both).
    """
    n = planned_cpu_streams(runtime, meta_batch)
    return max(n, cores()) if cpu_streams_apply(runtime) and is_auto(runtime["cpu_streams"]) else n
