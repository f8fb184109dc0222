"""MAML++, CIFAR-FS 5-way 1-shot.

Source: Bertinetto, Henriques, Torr & Vedaldi 2019 (CIFAR-100's classes split 64 / 16 / 20).
MAML++ (Antoniou, Edwards & Storkey 2019) with the reference code's Mini-ImageNet settings:
per-step batch norm, learned per-step rates from 0.01, multi-step loss over 7,500 meta-steps.
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config cifar_fs_5w1s_mamlpp --data-dir DIR
Data: TFDS cifar100 prepared offline (`metajax data check cifar_fs --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cifar_fs", "mamlpp", 1, smoke)
