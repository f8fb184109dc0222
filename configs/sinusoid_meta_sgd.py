"""Meta-SGD on sinusoid regression (per-parameter learned inner rates).

Source: Li et al. 2017, section 4.1 (one inner step, rates initialised to a
small value and learned jointly with the init; MAML's other settings).
Baselines are adapted with plain SGD at inner.lr.

Run:      metajax train --config sinusoid_meta_sgd
Expected: 1-step MSE at or below MAML's.
Runtime:  about a minute on 2 CPU cores.
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("meta_sgd", smoke)
