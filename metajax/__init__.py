"""metajax: exact and first-order gradient-based meta-learning in JAX.

The public API; the code lives in ``metajax._src``.
"""

from metajax._src.anil import anil
from metajax._src.base import InnerResult, MetaLearner, MetaState, Task
from metajax._src.compile_cache import disable_compilation_cache, enable_compilation_cache
from metajax._src.inner import (
    SAFE_EPS_ROOT,
    AbstractMetaGradient,
    Exact,
    FirstOrder,
    Implicit,
    adam,
    combine,
    inner_loop,
    make_inner_opt,
    partition,
    select_mask,
)
from metajax._src.maml import fomaml, imaml, maml
from metajax._src.meta_sgd import MetaSGDParams, meta_sgd
from metajax._src.meta_step import MetaStep, make_meta_step, make_train_loop
from metajax._src.reptile import reptile
from metajax._src.sharding import (
    initialize_distributed,
    make_mesh,
    replicate,
    resolve_cpu_streams,
    shard_task_map,
    shard_tasks,
    use_cpu_streams,
)
from metajax._src.validation import check_task, check_task_values, task_spec_of

__version__ = "0.1.0"

__all__ = [
    "SAFE_EPS_ROOT",
    "AbstractMetaGradient",
    "Exact",
    "FirstOrder",
    "Implicit",
    "InnerResult",
    "MetaLearner",
    "MetaSGDParams",
    "MetaState",
    "MetaStep",
    "Task",
    "adam",
    "anil",
    "check_task",
    "check_task_values",
    "combine",
    "disable_compilation_cache",
    "enable_compilation_cache",
    "fomaml",
    "imaml",
    "initialize_distributed",
    "inner_loop",
    "make_inner_opt",
    "make_mesh",
    "make_meta_step",
    "make_train_loop",
    "maml",
    "meta_sgd",
    "partition",
    "replicate",
    "reptile",
    "resolve_cpu_streams",
    "select_mask",
    "shard_task_map",
    "shard_tasks",
    "task_spec_of",
    "use_cpu_streams",
]
