"""First-order MAML, Omniglot 5-way 1-shot.

Source: Finn et al. 2017 / Nichol et al. 2018, MAML's settings.
Paper: 98.3 +- 0.5 % (Finn et al.).

Run:      metajax train --config omniglot_5w1s_fomaml
Measured: 90.33 +- 0.59 % (transductive BN) / 86.91 +- 0.68 % (non-transductive) on 600 test tasks after 3,000
meta-steps, a shortened budget (2026-12-04; benchmarks/results/reproduction/omniglot_5w1s_fomaml.json).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("fomaml", 5, 1, smoke)
    return c
