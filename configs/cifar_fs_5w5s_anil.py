"""ANIL (only the head adapts), CIFAR-FS 5-way 5-shot.

Source: Bertinetto, Henriques, Torr & Vedaldi 2019 (CIFAR-100's classes split 64 / 16 / 20).
Settings: MAML's Mini-ImageNet ones (configs/fewshot_sets.py).
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config cifar_fs_5w5s_anil --data-dir DIR
Data: TFDS cifar100 prepared offline (`metajax data check cifar_fs --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cifar_fs", "anil", 5, smoke)
