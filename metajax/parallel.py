"""Running over several devices: task-sharded meshes, CPU task streams and multi-host start-up.

The meta-gradient is a mean over tasks, so the task axis is split: :func:`make_mesh` builds a one-axis mesh,
:func:`shard_tasks` places a task batch on it and :func:`replicate` the parameters; pass ``mesh=`` to
:func:`metajax.make_meta_step` and the per-device meta-gradients are averaged by one all-reduce.
:func:`shard_task_map` runs independent per-task work (evaluation) over a mesh, padding the batch.

On a CPU, :func:`use_cpu_streams` splits the host into ``n`` XLA devices ("task streams") before JAX starts,
so several programs run at once (:func:`resolve_cpu_streams` picks ``n``). Multi-host (GPU clusters, TPU
pods): call :func:`initialize_distributed` in every process first.
"""

from metajax._src.sharding import (
    TASK_AXIS,
    check_divisible,
    initialize_distributed,
    make_mesh,
    replicate,
    resolve_cpu_streams,
    shard_task_map,
    shard_tasks,
    use_cpu_streams,
)
from metajax._src.sharding import (
    cores as available_cores,
)

__all__ = [
    "TASK_AXIS",
    "available_cores",
    "check_divisible",
    "initialize_distributed",
    "make_mesh",
    "replicate",
    "resolve_cpu_streams",
    "shard_task_map",
    "shard_tasks",
    "use_cpu_streams",
]
