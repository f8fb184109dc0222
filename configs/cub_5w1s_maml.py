"""MAML, CUB 5-way 1-shot.

Source: Wah et al. 2011, with the 100 / 50 / 50 class split of Chen, Liu, Kira, Wang & Huang 2019.
Settings: MAML's Mini-ImageNet ones (configs/fewshot_sets.py).
Paper: MAML with Conv4 55.92 +- 0.95 % (Chen et al. 2019, with data augmentation).

Run:      metajax train --config cub_5w1s_maml --data-dir DIR
Data: TFDS caltech_birds2011 prepared offline (`metajax data check cub --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cub", "maml", 1, smoke)
