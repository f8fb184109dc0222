"""MAML, FC100 5-way 5-shot.

Source: Oreshkin, Rodriguez Lopez & Lacoste 2018 (CIFAR-100 split by superclass, 60 / 20 / 20 classes).
Settings: MAML's Mini-ImageNet ones (configs/fewshot_sets.py).
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config fc100_5w5s_maml --data-dir DIR
Data: TFDS cifar100 prepared offline (`metajax data check fc100 --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("fc100", "maml", 5, smoke)
