"""MAML++, FC100 5-way 1-shot.

Source: Oreshkin, Rodriguez Lopez & Lacoste 2018 (CIFAR-100 split by superclass, 60 / 20 / 20 classes).
MAML++ (Antoniou, Edwards & Storkey 2019) with the reference code's Mini-ImageNet settings:
per-step batch norm, learned per-step rates from 0.01, multi-step loss over 7,500 meta-steps.
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config fc100_5w1s_mamlpp --data-dir DIR
Data: TFDS cifar100 prepared offline (`metajax data check fc100 --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("fc100", "mamlpp", 1, smoke)
