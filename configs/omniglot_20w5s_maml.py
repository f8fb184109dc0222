"""MAML, Omniglot 20-way 5-shot.

Source: Finn et al. 2017 (appendix A.1), as 20-way 1-shot. Paper: 98.9 +- 0.2 %.

Run:      metajax train --config omniglot_20w5s_maml
Measured (shortened): 100 meta-steps (~51 min on 2 CPU cores with 2 task streams) -> 91.98 +- 0.23 %
(transductive BN) / 91.85 +- 0.23 % (support BN) on 600 test tasks (benchmarks/README.md).
"""

from .omniglot import maml_20_way


def get_config(smoke: bool = False):
    return maml_20_way(5, smoke)
