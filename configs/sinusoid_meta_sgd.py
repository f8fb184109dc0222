"""Meta-SGD on sinusoid regression (per-parameter learned inner rates).

Source: Li et al. 2017, section 4.1 (one inner step, rates initialised to a
small value and learned jointly with the init; MAML's other settings).
Baselines are adapted with plain SGD at inner.lr.
Paper: 10-shot MSE after one step 0.53 +- 0.09 (Li et al. 2017, Table 1; MAML 0.85 +- 0.14).

Run:      metajax train --config sinusoid_meta_sgd
Runtime:  about a minute on 2 CPU cores.
Measured: query MSE 0.209 +- 0.026 / 0.926 +- 0.502, 120 diverged after 1 / 10 inner steps on 600 held-out
tasks (2026-12-04; benchmarks/results/reproduction/sinusoid_meta_sgd.json).
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("meta_sgd", smoke)
