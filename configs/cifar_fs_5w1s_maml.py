"""MAML, CIFAR-FS 5-way 1-shot.

Source: Bertinetto, Henriques, Torr & Vedaldi 2019 (CIFAR-100's classes split 64 / 16 / 20).
Settings: MAML's Mini-ImageNet ones (configs/fewshot_sets.py).
Paper: MAML 58.9 +- 1.9 % (Bertinetto et al. 2019, Table 1).

Run:      metajax train --config cifar_fs_5w1s_maml --data-dir DIR
Data: TFDS cifar100 prepared offline (`metajax data check cifar_fs --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cifar_fs", "maml", 1, smoke)
