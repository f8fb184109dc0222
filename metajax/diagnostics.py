"""Numerical diagnostics: exact vs first-order meta-gradients, variance, meta-overfitting.

``from metajax import diagnostics`` (or ``import metajax.diagnostics``):

* :func:`compare_meta_gradients`, :func:`report_table`, :func:`sweep`,
  :func:`one_d_example`, :func:`finite_difference_gradient`,
  :func:`meta_objective` -- exact MAML, FOMAML, Reptile and finite
  differences side by side, per layer (also ``metajax grads``).
* :func:`variance_decomposition` -- task / support / query components of the
  meta-gradient variance from a nested sample (:func:`nested_sinusoid_tasks`
  draws one), :func:`fit_exponent` for the alpha^2 and curvature sweeps.
* :func:`loto`, :func:`leave_one_group_out`, :func:`leave_one_alphabet_out`
  -- leave-one-task/group-out cross-validation and the risk-inflation ratio.
* :func:`estimate_memory` (compiles a function and estimates) and
  :func:`compiled_memory` (estimates an already compiled one) -- XLA's own
  estimate of a step's peak memory, before it runs;
  :func:`plan_memory` picks the task chunk and gradient rematerialisation
  (:data:`REMAT_LADDER`) that fit a budget (what ``metajax train`` does with
  ``runtime.memory_plan=auto``); :func:`current_rss_mb`,
  :func:`release_host_memory` and :func:`compilation_cache_events` for
  measuring runs.
* :func:`post_adaptation_risk` -- every task's query loss after adaptation.
"""

from metajax._src.compile_cache import compilation_cache_events
from metajax._src.diagnostics import (
    compare_meta_gradients,
    finite_difference_gradient,
    meta_objective,
    one_d_example,
    report_table,
    sweep,
)
from metajax._src.learner import post_adaptation_risk
from metajax._src.loto import leave_one_alphabet_out, leave_one_group_out, loto
from metajax._src.memory import (
    REMAT_LADDER,
    MemoryEstimate,
    MemoryPlan,
    Trial,
    compiled_memory,
    current_rss_mb,
    estimate_memory,
    plan_memory,
    release_host_memory,
)
from metajax._src.variance import components, fit_exponent, nested_sinusoid_tasks, variance_decomposition

__all__ = [
    "MemoryEstimate",
    "MemoryPlan",
    "REMAT_LADDER",
    "Trial",
    "compare_meta_gradients",
    "compilation_cache_events",
    "compiled_memory",
    "components",
    "current_rss_mb",
    "estimate_memory",
    "finite_difference_gradient",
    "fit_exponent",
    "leave_one_alphabet_out",
    "leave_one_group_out",
    "loto",
    "meta_objective",
    "nested_sinusoid_tasks",
    "one_d_example",
    "plan_memory",
    "post_adaptation_risk",
    "release_host_memory",
    "report_table",
    "sweep",
    "variance_decomposition",
]
