"""MAML, CUB 5-way 5-shot, ResNet-12.

Source: Wah et al. 2011, with the 100 / 50 / 50 class split of Chen, Liu, Kira, Wang & Huang 2019.
ResNet-12 (64-160-320-640) trained from scratch with the Conv4 config's settings; Ye & Chao
2022 start MAML from a supervised pre-trained ResNet-12: `metajax pretrain --config cub_5w5s_maml_resnet12`, then
`metajax train --init RUN`.
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config cub_5w5s_maml_resnet12 --data-dir DIR
Data: TFDS caltech_birds2011 prepared offline (`metajax data check cub --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cub", "maml", 5, smoke, model="resnet12")
