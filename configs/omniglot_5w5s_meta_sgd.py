"""Meta-SGD, Omniglot 5-way 5-shot.

Source: Li et al. 2017: one inner step with learned per-parameter rates
(initialised at MAML's alpha for 5-way, 0.4), meta-batch 32 (MAML's).
Paper: 99.93 +- 0.09 %.

Run:      metajax train --config omniglot_5w5s_meta_sgd
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import meta_sgd_settings


def get_config(smoke: bool = False):
    return meta_sgd_settings(5, 5, smoke)
