"""MAML++, Mini-ImageNet 5-way 5-shot.

Source: Antoniou, Edwards & Storkey 2019 ("How to train your MAML", ICLR) and its reference code's Mini-ImageNet
settings: Conv4 with 48 filters, per-step batch-norm weights and running statistics, 5 inner steps with learned
per-layer per-step rates from 0.01, multi-step loss annealed over 7,500 meta-steps, meta-batch 2, 15 queries
per class, 50,000 meta-steps of Adam at 1e-3 (the reference configs' cosine schedule has its minimum at 1e-3
too, so the rate stays constant).
Paper: MAML++ reaches about 52 % (1-shot) and 68 % (5-shot) in its Table 2, against MAML's 48.70 +- 1.84 % and
63.11 +- 0.92 %.

Run:      metajax train --config miniimagenet_5w5s_mamlpp --data-dir /path/to/miniimagenet
Data: user-supplied (layouts: ``metajax.data.load_miniimagenet``).
Measured: no result file yet.
"""

from .miniimagenet import miniimagenet_mamlpp


def get_config(smoke: bool = False):
    return miniimagenet_mamlpp(5, smoke)
