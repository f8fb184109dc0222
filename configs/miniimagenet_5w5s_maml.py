"""MAML, Mini-ImageNet 5-way 5-shot.

Source: Finn et al. 2017 (appendix A.1): as 5-way 1-shot with meta-batch 2.
Paper: 63.11 +- 0.92 %.

Run:      metajax train --config miniimagenet_5w5s_maml --data-dir /path/to/miniimagenet
Data: user-supplied (layouts: ``metajax.data.load_miniimagenet``).
Measured: no result file yet.
"""

from .miniimagenet import miniimagenet_config


def get_config(smoke: bool = False):
    return miniimagenet_config("maml", 5, 5, smoke)
