"""MAML, tiered-ImageNet 5-way 5-shot.

Source: Ren et al. 2018 (tiered-ImageNet and its split).
Settings: MAML's Mini-ImageNet ones (configs/tieredimagenet.py).
Paper: 70.30 +- 1.75 % (Conv4), as reported by Liu et al. 2019 ("Learning to propagate labels", transductive
propagation networks) and Lee et al. 2019 (MetaOptNet).

Run:      metajax train --config tiered_5w5s_maml --data-dir DIR
Data: user-supplied (layouts: ``metajax.data.load_tieredimagenet``);
`metajax data check tiered_imagenet --data-dir DIR` says what it finds.
Measured: no result file yet.
"""

from .tieredimagenet import tiered_config


def get_config(smoke: bool = False):
    return tiered_config("maml", 5, smoke)
