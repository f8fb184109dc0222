"""MAML, Omniglot 5-way 1-shot.

Source: Finn et al. 2017 (appendix A.1): 1 inner step of SGD with alpha = 0.4,
meta-batch 32, Adam 1e-3, 60k iterations; evaluated with 3 inner steps.
Paper: 98.7 +- 0.4 % (transductive batch norm).

Run:      metajax train --config omniglot_5w1s_maml
Measured: 96.47 +- 0.34 % (transductive BN) / 95.35 +- 0.40 % (non-transductive) on 600 test tasks after 2,000
meta-steps, a shortened budget (2026-12-04; benchmarks/results/reproduction/omniglot_5w1s_maml.json).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("maml", 5, 1, smoke)
    return c
