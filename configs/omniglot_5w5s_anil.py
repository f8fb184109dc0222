"""ANIL, Omniglot 5-way 5-shot: only the linear head adapts in the inner loop.

Source: Raghu et al. 2020, with MAML's settings for this way count (1 inner
step of SGD with alpha = 0.4, meta-batch 32, Adam 1e-3; evaluated with 3 inner
steps). The paper reports ANIL on par with MAML on Omniglot 20-way 1-shot and
5-shot (its Table 2).
Paper: none for 5-way Omniglot (Raghu et al. 2020 report 20-way only: on par with MAML).

Run:      metajax train --config omniglot_5w5s_anil
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import maml_settings


def get_config(smoke: bool = False):
    return maml_settings("anil", 5, 5, smoke)
