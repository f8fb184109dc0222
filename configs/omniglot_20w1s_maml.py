"""MAML, Omniglot 20-way 1-shot.

Source: Finn et al. 2017 (appendix A.1): 5 inner steps with alpha = 0.1,
meta-batch 16, trained and evaluated with 5 steps. Paper: 95.8 +- 0.3 %.

Run:      metajax train --config omniglot_20w1s_maml
Shortened CPU budgets we ran: benchmarks/README.md (reproduction table).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("maml", 20, 1, smoke)
    c.inner.lr = 0.1
    c.inner.steps = 5
    c.eval.steps = 5
    if not smoke:
        c.data.meta_batch_size = 16
    return c
