"""MAML, Omniglot 20-way 5-shot.

Source: Finn et al. 2017 (appendix A.1), as 20-way 1-shot. Paper: 98.9 +- 0.2 %.

Run:      metajax train --config omniglot_20w5s_maml
Shortened CPU budgets we ran: benchmarks/README.md (reproduction table).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("maml", 20, 5, smoke)
    c.inner.lr = 0.1
    c.inner.steps = 5
    c.eval.steps = 5
    if not smoke:
        c.data.meta_batch_size = 16
    return c
