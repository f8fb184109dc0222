"""ANIL (only the head adapts), CUB 5-way 1-shot.

Source: Wah et al. 2011, with the 100 / 50 / 50 class split of Chen, Liu, Kira, Wang & Huang 2019.
Settings: MAML's Mini-ImageNet ones (configs/fewshot_sets.py).
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config cub_5w1s_anil --data-dir DIR
Data: TFDS caltech_birds2011 prepared offline (`metajax data check cub --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cub", "anil", 1, smoke)
