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
"""

from metajax._src.diagnostics import (
    compare_meta_gradients,
    finite_difference_gradient,
    meta_objective,
    one_d_example,
    report_table,
    sweep,
)
from metajax._src.loto import leave_one_alphabet_out, leave_one_group_out, loto
from metajax._src.variance import components, fit_exponent, nested_sinusoid_tasks, variance_decomposition

__all__ = [
    "compare_meta_gradients",
    "components",
    "finite_difference_gradient",
    "fit_exponent",
    "leave_one_alphabet_out",
    "leave_one_group_out",
    "loto",
    "meta_objective",
    "nested_sinusoid_tasks",
    "one_d_example",
    "report_table",
    "sweep",
    "variance_decomposition",
]
