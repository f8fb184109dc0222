"""MAML, Omniglot 20-way 1-shot.

Source: Finn et al. 2017 (appendix A.1): 5 inner steps with alpha = 0.1,
meta-batch 16, trained and evaluated with 5 steps. Paper: 95.8 +- 0.3 %.

Run:      metajax train --config omniglot_20w1s_maml
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import maml_20_way


def get_config(smoke: bool = False):
    return maml_20_way(1, smoke)
