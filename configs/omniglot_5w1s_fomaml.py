"""First-order MAML, Omniglot 5-way 1-shot.

Source: Finn et al. 2017 / Nichol et al. 2018, MAML's settings.
Paper: 98.3 +- 0.5 % (Finn et al.).

Run:      metajax train --config omniglot_5w1s_fomaml
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("fomaml", 5, 1, smoke)
    return c
