"""ANIL, Omniglot 20-way 1-shot: only the linear head adapts in the inner loop.

Source: Raghu et al. 2020, with MAML's settings for this way count (5 inner
steps with alpha = 0.1, meta-batch 16, trained and evaluated with 5 steps). The
paper reports ANIL on par with MAML on Omniglot 20-way 1-shot and 5-shot (its
Table 2).
Paper: 96.2 +- 0.5 % (Raghu et al. 2020, Table 2; MAML in the same table: 93.7 +- 0.7 %).

Run:      metajax train --config omniglot_20w1s_anil
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import maml_settings


def get_config(smoke: bool = False):
    return maml_settings("anil", 20, 1, smoke)
