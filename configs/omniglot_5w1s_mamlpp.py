"""MAML++, Omniglot 5-way 1-shot.

Source: Antoniou, Edwards & Storkey 2019 ("How to train your MAML", ICLR) and its reference code's Omniglot
settings: Conv4-64 with per-step batch-norm weights and running statistics, 5 inner steps with learned per-layer
per-step rates from 0.1 (convolutions and head adapted), multi-step loss annealed over 5,000 meta-steps,
meta-batch 8, 1 query example per class in training, Adam 1e-3 cosine-annealed to 1e-5 over 50,000 meta-steps.
Evaluation: transductive, support-statistics and running-statistics batch norm, 600 test tasks, 15 queries.
Paper: 99.47 +- 0.05 % (MAML (Finn et al. 2017): 98.7 +- 0.4 %).

Run:      metajax train --config omniglot_5w1s_mamlpp
Measured: no result file yet.
"""

from .omniglot import omniglot_mamlpp


def get_config(smoke: bool = False):
    return omniglot_mamlpp(5, 1, smoke)
