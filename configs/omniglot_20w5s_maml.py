"""MAML, Omniglot 20-way 5-shot.

Source: Finn et al. 2017 (appendix A.1), as 20-way 1-shot. Paper: 98.9 +- 0.2 %.

Run:      metajax train --config omniglot_20w5s_maml
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import maml_20_way


def get_config(smoke: bool = False):
    return maml_20_way(5, smoke)
