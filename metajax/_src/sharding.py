"""Data parallelism over tasks: a device mesh, the task axis sharded, parameters replicated.

The meta-gradient is a mean over tasks, so tasks are the natural axis to
split: each device adapts and differentiates its share of the task batch with
the learner's own strategy (``vmap`` or ``lax.map``, unchanged), and the
per-device means are averaged by one XLA all-reduce (``lax.pmean`` inside
``jax.shard_map``); the outer update then runs replicated, so every device
holds the same meta-parameters. One device is the same code with a
one-device mesh.

Multi-host (GPU clusters, TPU pods): call :func:`initialize_distributed`
first in every process; ``jax.devices()`` then lists every host's devices and
the mesh spans them all. Task sampling stays on-device and is keyed by the
global step only, so a run draws the same task batches whatever the device
count (each device computes only its slice of the batch's meta-gradient).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from metajax._src.base import pad_leading

TASK_AXIS = "tasks"


def make_mesh(devices: int | None = None, axis_name: str = TASK_AXIS) -> Mesh:
    """A one-axis mesh over the first ``devices`` devices (``None`` or -1: all of them).

    >>> make_mesh(1).shape["tasks"]
    1
    """
    available = jax.devices()
    n = len(available) if devices in (None, -1) else devices
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(available):
        raise ValueError(
            f"devices must be an int in 1..{len(available)} (or -1 for all) on this machine's "
            f"{len(available)} {available[0].platform} device(s), got {devices!r}. On CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices."
        )
    return Mesh(np.asarray(available[:n]), (axis_name,))


def resolve_cpu_streams(value: int | str, meta_batch: int, argname: str = "cpu_streams") -> int:
    """How many CPU task streams ``value`` means for a meta-batch of ``meta_batch`` tasks.

    ``0`` or ``"auto"``: one per core this process may run on (its CPU affinity), reduced to the
    largest count that divides the meta-batch; an int >= 1 is taken as given and must divide it.

    >>> resolve_cpu_streams(3, 6)
    3
    """
    if is_auto(value):
        n = cores()
        return max(d for d in range(1, min(n, meta_batch) + 1) if meta_batch % d == 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{argname} must be an int >= 1, or 0 / 'auto' for one per core, got {value!r}.")
    if meta_batch % value:
        raise ValueError(
            f"{argname}={value} does not divide the meta-batch of {meta_batch} tasks: each stream takes an equal "
            "share of the tasks. Use a divisor of the meta-batch, or 0 for one per core."
        )
    return value


def is_auto(value: Any) -> bool:
    return value == "auto" or (value == 0 and not isinstance(value, bool))


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_cpu_streams(n: int) -> None:
    """Split the host CPU backend into ``n`` XLA devices ("task streams"); call before JAX computes anything.

    XLA:CPU runs a program's copies and elementwise loops on one thread, so
    one program rarely keeps two cores busy. With the host split into ``n``
    devices and the task axis sharded over them (``make_mesh(n)``), each
    device runs its share of the tasks as its own program, concurrently. It
    changes only where tasks run: the meta-gradient is the same mean (up to
    summation order). Only the CPU backend is affected; on a GPU/TPU machine
    this is a no-op for the accelerator devices.
    """
    import jax

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}.")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as err:
        raise RuntimeError(
            f"use_cpu_streams({n}) must run before JAX computes anything: JAX creates its CPU backend, with its "
            "device count, on first use. Call it right after `import jax`."
        ) from err


def check_divisible(num_tasks: int, mesh: Mesh, axis_name: str = TASK_AXIS, argname: str = "meta-batch") -> None:
    """Raise a clear error when ``num_tasks`` does not split evenly over the mesh's task axis."""
    n = mesh.shape[axis_name]
    if num_tasks % n:
        lower, upper = (num_tasks // n) * n, (num_tasks // n + 1) * n
        raise ValueError(
            f"{argname} of {num_tasks} tasks does not split evenly over {n} devices: use a multiple of {n} "
            f"(e.g. {upper}{f' or {lower}' if lower else ''}). Tasks are not padded: a padded task would "
            "change the mean meta-gradient."
        )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def task_sharded(mesh: Mesh, axis_name: str = TASK_AXIS) -> NamedSharding:
    return NamedSharding(mesh, P(axis_name))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of ``tree`` on all devices of ``mesh`` (leaves already placed so are returned as they are)."""
    return jax.device_put(tree, replicated(mesh))


def shard_tasks(tasks: Any, mesh: Mesh, axis_name: str = TASK_AXIS) -> Any:
    """Split a task batch (leading task axis on every leaf) over the mesh's task axis."""
    leaves = jax.tree_util.tree_leaves(tasks)
    if leaves:
        check_divisible(leaves[0].shape[0], mesh, axis_name)
    return jax.device_put(tasks, task_sharded(mesh, axis_name))


def shard_meta_grad(meta_grad: Callable, mesh: Mesh, axis_name: str = TASK_AXIS) -> Callable:
    """``meta_grad(meta_params, tasks, context=None)`` computed per device on its tasks, then averaged across devices.

    The per-task keys are split with the tasks; the outer step and the model state are replicated; the
    direction, the metrics and the task-averaged model state are averaged across devices. Equal shards make the
    mean of the per-device means the mean over the whole batch, so the result equals the unsharded
    ``meta_grad`` up to floating-point summation order.
    """
    from metajax._src.base import MetaContext

    def local(meta_params, tasks, step, model_state, keys):
        out = meta_grad(meta_params, tasks, MetaContext(step, model_state, keys))
        return jax.lax.pmean(out, axis_name)

    def run(meta_params, tasks, context=None):
        context = MetaContext() if context is None else context
        leaves = jax.tree_util.tree_leaves(tasks)
        if leaves:
            check_divisible(leaves[0].shape[0], mesh, axis_name)
        key_spec = P() if context.task_keys is None else P(axis_name)
        # check_vma=False: inside, jax.grad w.r.t. the replicated meta-parameters must stay per-device
        # (with varying-axis typing it would be summed over devices implicitly, before our mean).
        sharded = _shard_map(local, mesh=mesh, in_specs=(P(), P(axis_name), P(), P(), key_spec), out_specs=P())
        return sharded(meta_params, tasks, context.step, context.model_state, context.task_keys)

    return run


def _shard_map(fn: Callable, **kwargs: Any) -> Callable:
    """``jax.shard_map`` without replication checking (``jax.experimental.shard_map`` on JAX < 0.6)."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, check_vma=False, **kwargs)
    from jax.experimental.shard_map import shard_map  # pragma: no cover - older JAX

    return shard_map(fn, check_rep=False, **kwargs)  # pragma: no cover


def shard_task_map(per_shard: Callable, mesh: Mesh | None, axis_name: str = TASK_AXIS) -> Callable:
    """``per_shard(consts, tasks)`` run on every device of ``mesh`` over its share of the tasks; a jitted function.

    For work that is independent per task (evaluation: adapt each task, score
    its query set), so any task count works: the batch is padded to a multiple
    of the device count by repeating its last task, and the padded results are
    dropped. ``per_shard`` maps over its tasks itself (``lax.map``/``vmap``)
    and returns outputs with a leading task axis; ``consts`` (e.g. the
    meta-parameters) are replicated. With ``mesh`` ``None`` or of one device it
    is ``jax.jit(per_shard)``: each task's result is computed by the same
    program either way.
    """
    if mesh is None or mesh.shape[axis_name] == 1:
        return jax.jit(per_shard)
    n = mesh.shape[axis_name]
    sharded = jax.jit(_shard_map(per_shard, mesh=mesh, in_specs=(P(), P(axis_name)), out_specs=P(axis_name)))

    def run(consts, tasks):
        leaves = jax.tree_util.tree_leaves(tasks)
        if not leaves:
            raise ValueError("tasks must hold at least one array with a leading task axis.")
        num = leaves[0].shape[0]
        if num == 0:
            raise ValueError("tasks must hold at least one task, got an empty batch.")
        pad = -num % n
        tasks = pad_leading(tasks, num + pad)
        out = sharded(replicate(consts, mesh), jax.device_put(tasks, task_sharded(mesh, axis_name)))
        return jax.tree_util.tree_map(lambda x: x[:num], out) if pad else out

    return run


def initialize_distributed() -> tuple[int, int]:
    """Start JAX's multi-process runtime from the environment; returns ``(process_index, process_count)``.

    Reads ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; when they are absent,
    ``jax.distributed.initialize()`` detects SLURM, Open MPI and Cloud TPU
    environments by itself. Call it before any other JAX call.
    """
    kwargs: dict[str, Any] = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = os.environ["JAX_COORDINATOR_ADDRESS"]
    for env, name in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(env):
            try:
                kwargs[name] = int(os.environ[env])
            except ValueError:
                raise ValueError(f"{env} must be an integer, got {os.environ[env]!r}.") from None
    jax.distributed.initialize(**kwargs)
    return jax.process_index(), jax.process_count()
