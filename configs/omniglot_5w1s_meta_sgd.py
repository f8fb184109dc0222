"""Meta-SGD, Omniglot 5-way 1-shot.

Source: Li et al. 2017: one inner step with learned per-parameter rates
(initialised at MAML's alpha = 0.4 here), meta-batch 32. Paper: 99.53 +- 0.26 %.

Run:      metajax train --config omniglot_5w1s_meta_sgd
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("meta_sgd", 5, 1, smoke)
    c.eval.steps = 1
    return c
