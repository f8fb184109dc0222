"""ANIL, Omniglot 5-way 1-shot: only the linear head adapts in the inner loop.

Source: Raghu et al. 2020, with MAML's Omniglot settings (the paper reports
Omniglot accuracy on par with MAML).
Paper: none for 5-way Omniglot (Raghu et al. 2020 report 20-way only: on par with MAML).

Run:      metajax train --config omniglot_5w1s_anil
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("anil", 5, 1, smoke)
    return c
