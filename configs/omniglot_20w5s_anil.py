"""ANIL, Omniglot 20-way 5-shot: only the linear head adapts in the inner loop.

Source: Raghu et al. 2020, with MAML's settings for this way count (5 inner
steps with alpha = 0.1, meta-batch 16, trained and evaluated with 5 steps). The
paper reports ANIL on par with MAML on Omniglot 20-way 1-shot and 5-shot (its
Table 2).
Paper: 98.0 +- 0.3 % (Raghu et al. 2020, Table 2; MAML in the same table: 96.4 +- 0.1 %).

Run:      metajax train --config omniglot_20w5s_anil
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import maml_settings


def get_config(smoke: bool = False):
    return maml_settings("anil", 20, 5, smoke)
