"""MAML, CIFAR-FS 5-way 5-shot, ResNet-12.

Source: Bertinetto, Henriques, Torr & Vedaldi 2019 (CIFAR-100's classes split 64 / 16 / 20).
ResNet-12 (64-160-320-640) trained from scratch with the Conv4 config's settings; Ye & Chao
2022 start MAML from a supervised pre-trained ResNet-12: `metajax pretrain --config cifar_fs_5w5s_maml_resnet12`, then
`metajax train --init RUN`.
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config cifar_fs_5w5s_maml_resnet12 --data-dir DIR
Data: TFDS cifar100 prepared offline (`metajax data check cifar_fs --data-dir DIR`).
Measured: no result file yet.
"""

from .fewshot_sets import fewshot_config


def get_config(smoke: bool = False):
    return fewshot_config("cifar_fs", "maml", 5, smoke, model="resnet12")
