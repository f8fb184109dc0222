"""Reptile, Omniglot 5-way 1-shot (transductive).

Source: Nichol et al. 2018 (run_omniglot.py settings): train shots 10, inner
Adam (beta1 = 0) lr 1e-3, 5 inner steps on minibatches of 10, meta-batch 5,
outer step 1.0 annealed to 0, 100k outer steps; evaluated with 50 inner
steps on minibatches of 5. Paper: 97.68 +- 0.04 % (transductive).

Run:      metajax train --config omniglot_5w1s_reptile
Shortened CPU budgets we ran: benchmarks/README.md (reproduction table).
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(5, 1, smoke)
