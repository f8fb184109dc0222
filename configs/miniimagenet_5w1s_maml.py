"""MAML, Mini-ImageNet 5-way 1-shot.

Source: Finn et al. 2017 (appendix A.1): 32 filters, 5 inner steps with
alpha = 0.01 (10 at test), meta-batch 4, 15 queries per class, 60k iterations.
Paper: 48.70 +- 1.84 %.

Run:      metajax train --config miniimagenet_5w1s_maml --data-dir /path/to/miniimagenet
Data: user-supplied (layouts: ``metajax.data.load_miniimagenet``).
Measured: no result file yet.
"""

from .miniimagenet import miniimagenet_config


def get_config(smoke: bool = False):
    return miniimagenet_config("maml", 5, 1, smoke)
