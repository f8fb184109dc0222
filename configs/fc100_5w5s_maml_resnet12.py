"""MAML, FC100 5-way 5-shot, ResNet-12.

Source: Oreshkin, Rodriguez Lopez & Lacoste 2018 (CIFAR-100 split by superclass, 60 / 20 / 20 classes).
ResNet-12 (64-160-320-640) trained from scratch with the Conv4 config's settings; Ye & Chao
2022 start MAML from a supervised pre-trained ResNet-12: `metajax pretrain --config fc100_5w5s_maml_resnet12`, then
`metajax train --init RUN`.
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config fc100_5w5s_maml_resnet12 --data-dir DIR
Data: TFDS cifar100 prepared offline (`metajax data check fc100 --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("fc100", "maml", 5, smoke, model="resnet12")
