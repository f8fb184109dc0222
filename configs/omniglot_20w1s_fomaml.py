"""First-order MAML, Omniglot 20-way 1-shot.

Source: Finn et al. 2017 (appendix A.1): 5 inner steps with alpha = 0.1,
meta-batch 16, trained and evaluated with 5 steps; the
second-order term dropped (Finn et al. 2017, section 5.2). Paper: 89.4 +- 0.5 %.

Run:      metajax train --config omniglot_20w1s_fomaml
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import maml_settings


def get_config(smoke: bool = False):
    return maml_settings("fomaml", 20, 1, smoke)
