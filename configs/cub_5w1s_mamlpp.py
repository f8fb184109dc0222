"""MAML++, CUB 5-way 1-shot.

Source: Wah et al. 2011, with the 100 / 50 / 50 class split of Chen, Liu, Kira, Wang & Huang 2019.
MAML++ (Antoniou, Edwards & Storkey 2019) with the reference code's Mini-ImageNet settings:
per-step batch norm, learned per-step rates from 0.01, multi-step loss over 7,500 meta-steps.
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config cub_5w1s_mamlpp --data-dir DIR
Data: TFDS caltech_birds2011 prepared offline (`metajax data check cub --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cub", "mamlpp", 1, smoke)
