"""Supervised pre-training of a backbone, and meta-learning from it.

Pre-training trains a few-shot backbone with a linear classifier over every meta-training class (ordinary
cross-entropy); meta-learning then starts from the backbone with its own, freshly initialised few-shot head:
the initialisation of the ResNet-12 results since Chen et al. 2019 ("A closer look at few-shot
classification", ICLR) and Ye & Chao 2022 ("How to train your MAML to excel in few-shot classification",
ICLR). ``metajax pretrain --config CONFIG`` and ``metajax train --config CONFIG --init RUN`` do it from a config;
from Python::

    x, y = classification_batch(key, images, 128, "flip_crop")       # images: (classes, examples, H, W[, C])
    loss, aux = classification_loss(classifier.apply)(params, x, y)  # cross-entropy, {"accuracy": ...}
    start = with_backbone(fewshot_model.init(key), backbone_of(params))  # the head keeps its own values
"""

from metajax._src.pretrain import (
    AUGMENTATIONS,
    augment_batch,
    backbone_of,
    classification_batch,
    classification_loss,
    per_step_layout,
    with_backbone,
)

__all__ = [
    "AUGMENTATIONS",
    "augment_batch",
    "backbone_of",
    "classification_batch",
    "classification_loss",
    "per_step_layout",
    "with_backbone",
]
