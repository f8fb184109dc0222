"""metajax: exact and first-order gradient-based meta-learning in JAX.

The algorithms are factories named after their papers -- :func:`maml`, :func:`fomaml`, :func:`imaml`,
:func:`reptile`, :func:`meta_sgd`, :func:`anil`, :func:`maml_plus_plus` -- each returning a :class:`MetaLearner`
of pure functions.
How gradients cross the inner loop is one explicit object (:class:`Exact`, :class:`FirstOrder`,
:class:`Implicit`); :func:`make_meta_step` turns a learner and an Optax optimiser into the outer update.

Secondary topics live in sub-modules: :mod:`metajax.models` (models and losses), :mod:`metajax.data`
(sinusoid, Omniglot, Mini-ImageNet), :mod:`metajax.evaluation` (adaptation curves, few-shot scores,
fine-tuning), :mod:`metajax.parallel` (meshes, task sharding, CPU task streams) and :mod:`metajax.diagnostics`
(meta-gradient comparisons, variance, meta-overfitting, memory estimates).
"""

from metajax import diagnostics, parallel
from metajax._src.anil import anil
from metajax._src.base import InnerResult, MetaContext, MetaLearner, MetaState, Task
from metajax._src.compile_cache import disable_compilation_cache, enable_compilation_cache
from metajax._src.implicit import Implicit
from metajax._src.inner import (
    SAFE_EPS_ROOT,
    AbstractMetaGradient,
    Exact,
    FirstOrder,
    adam,
    make_inner_opt,
    select_mask,
)
from metajax._src.learner import batch_over_tasks
from metajax._src.maml import fomaml, imaml, maml
from metajax._src.mamlpp import MAMLPlusPlusParams, maml_plus_plus, msl_weights, per_step_sgd
from metajax._src.meta_sgd import MetaSGDParams, meta_sgd
from metajax._src.meta_step import MetaStep, make_meta_step, make_train_loop
from metajax._src.reptile import reptile
from metajax._src.strategy import inner_loop, make_meta_gradient
from metajax._src.validation import check_task, check_task_values, task_spec_of
from metajax._src.version import __version__

__all__ = [
    "AbstractMetaGradient",
    "Exact",
    "FirstOrder",
    "Implicit",
    "InnerResult",
    "MAMLPlusPlusParams",
    "MetaContext",
    "MetaLearner",
    "MetaSGDParams",
    "MetaState",
    "MetaStep",
    "SAFE_EPS_ROOT",
    "Task",
    "__version__",
    "adam",
    "anil",
    "batch_over_tasks",
    "check_task",
    "check_task_values",
    "diagnostics",
    "disable_compilation_cache",
    "enable_compilation_cache",
    "fomaml",
    "imaml",
    "inner_loop",
    "make_inner_opt",
    "make_meta_gradient",
    "make_meta_step",
    "make_train_loop",
    "maml",
    "maml_plus_plus",
    "meta_sgd",
    "msl_weights",
    "parallel",
    "per_step_sgd",
    "reptile",
    "select_mask",
    "task_spec_of",
]
