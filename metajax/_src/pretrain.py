"""Supervised pre-training of a backbone, and starting meta-learning from it.

Pre-training trains the backbone with a linear classifier over all meta-training classes (ordinary
cross-entropy); meta-learning then starts from the backbone with its own, freshly initialised head (the
few-shot head has ``ways`` outputs, the pre-training one as many as there are classes). This is the
initialisation of the ResNet-12 results since Chen et al. 2019 ("A closer look at few-shot classification",
ICLR) and Ye & Chao 2022 ("How to train your MAML to excel in few-shot classification", ICLR).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

AUGMENTATIONS = ("none", "flip_crop")
"""Data augmentation of :func:`classification_batch`: ``none``, or ``flip_crop`` (a random horizontal flip and
a random crop of the image padded by an eighth of its size on each side, with zeros)."""


def classification_batch(
    key: jax.Array, images: jax.Array | Callable, batch_size: int, augment: str = "none"
) -> tuple[jax.Array, jax.Array]:
    """A batch of labelled images drawn uniformly (with replacement) from every class.

    Args:
      key: PRNG key.
      images: uint8 ``(classes, examples, H, W)`` or ``(classes, examples, H, W, C)``, as the episode sampler
        takes them; the label of an image is its class index. Or a function ``draw(key) -> (x, y)`` that draws
        ``batch_size`` uint8 images ``(batch_size, H, W, C)`` and their labels itself (data kept on the host:
        :func:`metajax.data.tiered_classification_sampler`).
      batch_size: images in the batch.
      augment: one of :data:`AUGMENTATIONS`.

    Returns:
      ``(x, y)``: float32 ``(batch_size, H, W, C)`` in [0, 1] and int32 ``(batch_size,)``.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}.")
    kc, ke, kf, ko = jax.random.split(key, 4)
    if callable(images):
        x, y = images(kc)
    else:
        y = jax.random.randint(kc, (batch_size,), 0, images.shape[0], dtype=jnp.int32)
        n = jax.random.randint(ke, (batch_size,), 0, images.shape[1])
        x = images[y, n]
    if x.ndim == 3:
        x = x[..., None]
    return augment_batch(x.astype(jnp.float32) / 255.0, kf, ko, augment), y


def augment_batch(x: jax.Array, flip_key: jax.Array, crop_key: jax.Array, augment: str) -> jax.Array:
    """``"flip_crop"``: a random horizontal flip, then a random crop of the image padded by an eighth of its size on
    each side; ``"none"``: ``x`` itself. ``x``: float ``(batch, H, W, C)``."""
    if augment == "flip_crop":
        batch_size = x.shape[0]
        flip = jax.random.bernoulli(flip_key, 0.5, (batch_size,))
        x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
        h, w = x.shape[1:3]
        ph, pw = max(h // 8, 1), max(w // 8, 1)
        padded = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        kh, kw = jax.random.split(crop_key)
        top = jax.random.randint(kh, (batch_size,), 0, 2 * ph + 1)
        left = jax.random.randint(kw, (batch_size,), 0, 2 * pw + 1)
        x = jax.vmap(lambda im, i, j: jax.lax.dynamic_slice(im, (i, j, 0), (h, w, im.shape[-1])))(padded, top, left)
    return x


def classification_loss(apply: Callable) -> Callable:
    """``loss(params, x, y) -> (mean cross-entropy, {"accuracy": ...})`` of a classifier ``apply(params, x)``."""

    def loss(params, x, y):
        logits = apply(params, x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

    return loss


def per_step_layout(backbone: dict, target: dict, head: str = "head") -> dict:
    """A stateless backbone laid out as ``target``'s per-step model (MAML++'s ``conv4_per_step`` /
    ``resnet12_stateful(num_steps=...)``): Conv4's ``RefBatchNorm_i`` becomes ``Norm_i``, and a leaf whose target
    has one more, leading axis (one copy per inner step) is repeated along it. Anything else is left as it is
    (:func:`with_backbone` then names what does not fit)."""
    out = {}
    for name, module in backbone.items():
        if name.startswith("RefBatchNorm_") and name not in target and "Norm_" + name.split("_", 1)[1] in target:
            name = "Norm_" + name.split("_", 1)[1]
        if name != head and name in target:
            want = target[name]
            if jax.tree_util.tree_structure(want) == jax.tree_util.tree_structure(module):
                module = jax.tree_util.tree_map(
                    lambda t, b: (
                        jnp.broadcast_to(b, jnp.shape(t))
                        if jnp.ndim(t) == jnp.ndim(b) + 1 and jnp.shape(t)[1:] == jnp.shape(b)
                        else b
                    ),
                    want,
                    module,
                )
        out[name] = module
    return out


def _top(params: Any) -> dict:
    """The module-level dictionary of a Flax parameter tree (``params["params"]`` when it is there)."""
    return params["params"] if isinstance(params, dict) and set(params) == {"params"} else params


def backbone_of(params: Any, head: str = "head") -> Any:
    """``params`` without the classifier module ``head`` (what pre-training hands to meta-learning)."""
    top = _top(params)
    if head not in top:
        raise ValueError(f"head: the parameters have no module {head!r}; their modules are {sorted(top)}.")
    rest = {k: v for k, v in top.items() if k != head}
    return {"params": rest} if top is not params else rest


def with_backbone(params: Any, backbone: Any, head: str = "head") -> Any:
    """``params`` with every module but ``head`` taken from ``backbone`` (the head keeps its own values).

    Raises:
      ValueError: the backbone's modules or shapes differ from ``params``' (another model or width), naming the
        first difference.
    """
    top, new = _top(params), per_step_layout(_top(backbone), _top(params), head)
    expected = sorted(k for k in top if k != head)
    if sorted(new) != expected:
        raise ValueError(
            f"the pre-trained backbone has modules {sorted(new)}, this model {expected} (besides {head!r}): "
            "pre-train with the same model settings."
        )
    ours, theirs = {k: top[k] for k in expected}, {k: new[k] for k in expected}
    if jax.tree_util.tree_structure(ours) != jax.tree_util.tree_structure(theirs):
        raise ValueError(
            f"the pre-trained backbone's parameters are not this model's: {jax.tree_util.tree_structure(theirs)} "
            f"against {jax.tree_util.tree_structure(ours)}. Pre-train with the same model settings."
        )
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree_util.tree_leaves(theirs), strict=True):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(
                f"the pre-trained backbone's {jax.tree_util.keystr(path)} has shape {jnp.shape(b)}, this model's "
                f"{jnp.shape(a)}: pre-train with the same model settings."
            )
    taken = jax.tree_util.tree_map(lambda a, b: jnp.asarray(b, dtype=jnp.result_type(a)), ours, theirs)
    merged = {k: (top[k] if k == head else taken[k]) for k in top}
    return {"params": merged} if top is not params else merged
