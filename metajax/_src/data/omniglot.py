"""Omniglot through tensorflow-datasets, with the standard few-shot splits.

Data: the TFDS ``omniglot`` dataset (3.0.0), read with ``tfds.data_source``
(array_record files, no TensorFlow needed) from a data directory resolved as
the ``data_dir`` argument, else ``$METAJAX_DATA_DIR``, else
``~/tensorflow_datasets``. Nothing is downloaded at run time: a missing
directory raises :class:`DataNotFoundError` saying what to get and where to
put it (``metajax data prepare`` builds the TFDS copy from the original zips).

Preprocessing (MAML reference code): each 105x105 drawing is resized to 28x28
with Lanczos resampling (Pillow) and stored as uint8 ink intensity (0 =
background, 255 = ink); models see ``ink / 255`` as float32.

Splits (fixed seeds, so runs are comparable with each other and with papers):

* ``"maml"`` (Santoro et al. 2016, Finn et al. 2017): the 1,623 characters of
  both TFDS splits are shuffled with seed 0; 1,100 are meta-training, the next
  100 validation and the remaining 423 test (1,200 "training" characters in
  the papers' sense = train + validation). With ``rotations=True`` (default)
  each character at 0, 90, 180 and 270 degrees is a separate class, in every
  split (as in the MAML code), so 4,400 / 400 / 1,692 classes.
* ``"vinyals"`` (background / evaluation, Lake et al. and Vinyals et al.): the
  964 background characters minus 100 validation characters (seed 0) for
  meta-training, the 659 evaluation characters for test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

ENV_VAR = "METAJAX_DATA_DIR"
IMAGE_SIZE = 28
EXAMPLES_PER_CLASS = 20
NUM_CHARACTERS = 1623
SPLITS = ("maml", "vinyals")


class DataNotFoundError(FileNotFoundError):
    """The data set is not where it was looked for; the message says how to get it."""


class ClassImages(NamedTuple):
    """Images grouped by class.

    Attributes:
      images: uint8 ``(num_classes, 20, 28, 28)``, ink intensity.
      character: ``(num_classes,)`` global character id (0..1622).
      alphabet: ``(num_classes,)`` alphabet id (0..49).
      rotation: ``(num_classes,)`` quarter turns (0..3).
    """

    images: np.ndarray
    character: np.ndarray
    alphabet: np.ndarray
    rotation: np.ndarray


def missing_data_message(tried: list[Path]) -> str:
    where = ", ".join(str(p) for p in tried)
    return (
        f"Omniglot (TFDS 'omniglot' 3.0.0) not found; looked in: {where}. Either point --data-dir or "
        f"${ENV_VAR} at a directory containing omniglot/3.0.0/ (a prepared TFDS copy), or build one offline from "
        "the original zips images_background.zip and images_evaluation.zip (from "
        "https://github.com/brendenlake/omniglot, folder python/): put them in one folder ZIPS and run "
        "`metajax data prepare omniglot --zips ZIPS --data-dir DIR` (needs `pip install metajax[prepare]`)."
    )


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Find the TFDS data directory that holds ``omniglot/3.0.0``.

    Raises:
      DataNotFoundError: with instructions, if none of the candidates holds it.
    """
    if data_dir is not None:
        candidates = [Path(data_dir)]
    elif os.environ.get(ENV_VAR):
        candidates = [Path(os.environ[ENV_VAR])]
    else:
        candidates = [Path.home() / "tensorflow_datasets"]
    for c in candidates:
        if (c / "omniglot" / "3.0.0" / "dataset_info.json").is_file():
            return c
    raise DataNotFoundError(missing_data_message(candidates))


def _resize(image01: np.ndarray) -> np.ndarray:
    from PIL import Image

    # TFDS stores {0, 1} with 1 = white background; resize the 0..255 image
    # with Lanczos like the MAML code, then invert so that ink is high.
    im = Image.fromarray((image01[..., 0] * 255).astype(np.uint8))
    return 255 - np.asarray(im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.uint8)


def load_characters(data_dir: str | os.PathLike | None = None) -> dict[str, ClassImages]:
    """Load both TFDS splits, grouped by character (no rotations).

    Returns:
      ``{"background": ..., "evaluation": ...}`` from the TFDS ``train`` and
      ``test`` splits (964 and 659 characters, 20 images each).
    """
    import tensorflow_datasets as tfds

    root = resolve_data_dir(data_dir)
    source = tfds.data_source("omniglot", data_dir=str(root))
    out = {}
    for name, split in (("background", "train"), ("evaluation", "test")):
        ds = source[split]
        rows = ds.__getitems__(list(range(len(ds))))
        labels = np.array([r["label"] for r in rows])
        order = np.argsort(labels, kind="stable")
        chars = np.unique(labels)
        counts = np.bincount(labels - chars.min())
        if not np.all(counts == EXAMPLES_PER_CLASS):
            raise ValueError(
                f"omniglot {split}: expected {EXAMPLES_PER_CLASS} images per character, got counts "
                f"from {counts.min()} to {counts.max()} (corrupted copy in {root}?)."
            )
        images = np.stack([_resize(rows[i]["image"]) for i in order])
        alphabets = np.array([rows[i]["alphabet"] for i in order]).reshape(len(chars), EXAMPLES_PER_CLASS)[:, 0]
        out[name] = ClassImages(
            images.reshape(len(chars), EXAMPLES_PER_CLASS, IMAGE_SIZE, IMAGE_SIZE),
            chars,
            alphabets,
            np.zeros(len(chars), np.int64),
        )
    return out


def _take(ci: ClassImages, idx: np.ndarray) -> ClassImages:
    return ClassImages(ci.images[idx], ci.character[idx], ci.alphabet[idx], ci.rotation[idx])


def _concat(a: ClassImages, b: ClassImages) -> ClassImages:
    return ClassImages(*(np.concatenate([x, y]) for x, y in zip(a, b, strict=True)))


def with_rotations(ci: ClassImages) -> ClassImages:
    """Each class at 0, 90, 180 and 270 degrees as four classes (adjacent)."""
    imgs = np.stack([np.rot90(ci.images, k, axes=(2, 3)) for k in range(4)], axis=1)
    n = len(ci.character)
    return ClassImages(
        imgs.reshape(n * 4, EXAMPLES_PER_CLASS, IMAGE_SIZE, IMAGE_SIZE),
        np.repeat(ci.character, 4),
        np.repeat(ci.alphabet, 4),
        np.tile(np.arange(4), n),
    )


def split_characters(
    chars: dict[str, ClassImages], split: str = "maml", seed: int = 0, num_val: int = 100
) -> dict[str, ClassImages]:
    """Split characters into ``train`` / ``val`` / ``test`` (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    rng = np.random.default_rng(seed)
    if split == "maml":
        everything = _concat(chars["background"], chars["evaluation"])
        perm = rng.permutation(len(everything.character))
        return {
            "train": _take(everything, perm[: 1200 - num_val]),
            "val": _take(everything, perm[1200 - num_val : 1200]),
            "test": _take(everything, perm[1200:]),
        }
    bg = chars["background"]
    perm = rng.permutation(len(bg.character))
    return {
        "train": _take(bg, np.sort(perm[num_val:])),
        "val": _take(bg, np.sort(perm[:num_val])),
        "test": chars["evaluation"],
    }


def load_omniglot(
    data_dir: str | os.PathLike | None = None, split: str = "maml", rotations: bool = True, seed: int = 0
) -> dict[str, ClassImages]:
    """Omniglot as ``{"train", "val", "test"}`` :class:`ClassImages` (numpy, host memory).

    Args:
      data_dir: TFDS data directory (default ``$METAJAX_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      split: ``"maml"`` or ``"vinyals"``.
      rotations: add 90/180/270-degree rotations as new classes.
      seed: the split's shuffling seed (0 is the documented split).

    Raises:
      DataNotFoundError: the data is missing (the message says how to get it).
      ValueError: a bad ``split``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    parts = split_characters(load_characters(data_dir), split, seed)
    return {k: with_rotations(v) if rotations else v for k, v in parts.items()}
