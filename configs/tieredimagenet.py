"""Shared tiered-ImageNet settings (Ren et al. 2018: 351 / 97 / 160 classes from 20 / 6 / 8 ImageNet categories).

Data: user-supplied files (layouts: ``metajax.data.load_tieredimagenet``) under data.data_dir or
$METAJAX_TIEREDIMAGENET_DIR, converted once to a memory-mapped cache; episodes are drawn on the host and only
their images go to the device. The training settings are MAML's Mini-ImageNet ones (Finn et al. 2017, appendix
A.1; configs/fewshot_sets.py): 5 inner steps of SGD with alpha = 0.01 (10 at test), meta-batch 4 (1-shot) or 2
(5-shot), 15 queries per class, Adam 1e-3, 60,000 meta-steps; Conv4 with 32 filters or ResNet-12 64-160-320-640.
"""

from ml_collections import ConfigDict

from .fewshot_sets import fewshot_config


def tiered_config(algorithm: str, shots: int, smoke: bool = False, model: str = "conv4") -> ConfigDict:
    c = fewshot_config("tiered_imagenet", algorithm, shots, smoke, model=model)
    c.data.allow_pickle = False  # the published labels are pickles: --set data.allow_pickle=True to convert them
    # one device: each batch is drawn once on the host (CPU streams would each wait for the same callback)
    c.runtime.cpu_streams = 1
    return ConfigDict(c)
