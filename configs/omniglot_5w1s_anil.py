"""ANIL, Omniglot 5-way 1-shot: only the linear head adapts in the inner loop.

Source: Raghu et al. 2020, with MAML's Omniglot settings (the paper reports
Omniglot accuracy on par with MAML).

Run:      metajax train --config omniglot_5w1s_anil
Shortened CPU budgets we ran: benchmarks/README.md (reproduction table).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("anil", 5, 1, smoke)
    return c
