"""First-order MAML, Omniglot 5-way 5-shot.

Source: Finn et al. 2017 (appendix A.1): 1 inner step of SGD with alpha = 0.4,
meta-batch 32, Adam 1e-3; evaluated with 3 inner steps; the
second-order term dropped (Finn et al. 2017, section 5.2). Paper: 99.2 +- 0.2 %.

Run:      metajax train --config omniglot_5w5s_fomaml
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import maml_settings


def get_config(smoke: bool = False):
    return maml_settings("fomaml", 5, 5, smoke)
