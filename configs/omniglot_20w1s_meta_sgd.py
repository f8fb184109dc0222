"""Meta-SGD, Omniglot 20-way 1-shot.

Source: Li et al. 2017: one inner step with learned per-parameter rates
(initialised at MAML's alpha for 20-way, 0.1), meta-batch 16 (MAML's).
Paper: 95.93 +- 0.38 %.

Run:      metajax train --config omniglot_20w1s_meta_sgd
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import meta_sgd_settings


def get_config(smoke: bool = False):
    return meta_sgd_settings(20, 1, smoke)
