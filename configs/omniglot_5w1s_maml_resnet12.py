"""MAML, Omniglot 5-way 1-shot, ResNet-12.

Source: the Omniglot 5-way 1-shot settings of Finn et al. 2017 (appendix A.1: 1 inner step of SGD with
alpha = 0.4, meta-batch 32, Adam 1e-3; 3 inner steps at test) with the ResNet-12 backbone of Oreshkin et al. 2018
and Lee et al. 2019 (four residual blocks, 64-160-320-640 channels) in place of Conv4. For a pre-trained start
(Ye & Chao 2022): `metajax pretrain --config omniglot_5w1s_maml_resnet12`, then `metajax train --init RUN`.
Paper: no published figure for this setting that we have checked.

Run:      metajax train --config omniglot_5w1s_maml_resnet12 --data-dir DIR
Measured: no result file yet.
"""

from .omniglot import omniglot_config

RESNET12_WIDTHS = (64, 160, 320, 640)


def get_config(smoke: bool = False):
    c = omniglot_config("maml", 5, 1, smoke)
    c.model.name = "resnet12"
    del c.model.filters
    c.model.widths = RESNET12_WIDTHS if not smoke else (4, 4, 4, 4)
    return c
