"""MAML, ResNet-12, tiered-ImageNet 5-way 5-shot.

Source: Ren et al. 2018 (tiered-ImageNet and its split).
Settings: MAML's Mini-ImageNet ones (configs/tieredimagenet.py).
Paper: no published figure for this setting that we have checked. Ye & Chao 2022 start MAML from a
supervised pre-trained ResNet-12: `metajax pretrain --config tiered_5w5s_maml_resnet12`,
then `metajax train --init RUN`.

Run:      metajax train --config tiered_5w5s_maml_resnet12 --data-dir DIR
Data: user-supplied (layouts: ``metajax.data.load_tieredimagenet``);
`metajax data check tiered_imagenet --data-dir DIR` says what it finds.
Measured: no result file yet.
"""

from .tieredimagenet import tiered_config


def get_config(smoke: bool = False):
    return tiered_config("maml", 5, smoke, model="resnet12")
