"""Shared settings of the CIFAR-FS, FC100 and CUB configs (5-way, Conv4 or ResNet-12).

Data: TFDS ``cifar100`` (CIFAR-FS, FC100; 32x32x3) or ``caltech_birds2011`` (CUB; resized to 84x84x3), prepared
offline under data.data_dir or $METAJAX_DATA_DIR (``metajax data check cifar_fs`` says what is missing). The
training settings are MAML's Mini-ImageNet ones (Finn et al. 2017, appendix A.1): 5 inner steps of SGD with
alpha = 0.01 in training and 10 at test, meta-batch 4 (1-shot) or 2 (5-shot), 15 queries per class, Adam 1e-3,
60,000 meta-steps. Conv4 has 32 filters (64 for CUB, as in Chen et al. 2019); ResNet-12 is 64-160-320-640 wide.
"""

from ml_collections import ConfigDict

from .miniimagenet import miniimagenet_config
from .omniglot import mamlpp_settings

RESNET12_WIDTHS = (64, 160, 320, 640)


def fewshot_config(task: str, algorithm: str, shots: int, smoke: bool = False, model: str = "conv4") -> ConfigDict:
    c = miniimagenet_config("maml" if algorithm == "mamlpp" else algorithm, 5, shots, smoke)
    c.task = task
    del c.data.allow_pickle
    if task == "cub":
        c.data.crop = "none"  # whole images resized; "bbox" crops to the annotated box first
        if not smoke:
            c.model.filters = 64
    c.model.name = model
    if model == "resnet12":
        del c.model.filters
        c.model.widths = RESNET12_WIDTHS if not smoke else (4, 4, 4, 4)
    if algorithm == "mamlpp":
        c = mamlpp_settings(c, smoke, msl_epochs=15)
        c.inner.lr = 0.01
        c.outer.min_lr = 1e-3
        if model == "resnet12":
            c.inner.adapt = "Conv|Shortcut|head"
            c.model.drop_rate = 0.0
        if not smoke:
            c.data.meta_batch_size = 2
    return ConfigDict(c)
