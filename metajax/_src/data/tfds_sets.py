"""CIFAR-FS, FC100 and CUB-200-2011 few-shot splits, read offline from a TFDS data directory.

The images come from the TFDS datasets ``cifar100`` and ``caltech_birds2011`` prepared under a data directory
(the ``data_dir`` argument, else ``$METAJAX_DATA_DIR``, else ``~/tensorflow_datasets``) and read with
``tfds.data_source`` (array_record, no TensorFlow needed). Nothing is downloaded at run time: a missing dataset
raises :class:`DataNotFoundError` saying how to prepare it. TFDS's ``train`` and ``test`` splits are pooled and
regrouped by class, since the few-shot splits are splits of classes.

* **CIFAR-FS** (Bertinetto, Henriques, Torr & Vedaldi 2019): the 100 CIFAR-100 classes split 64 / 16 / 20 at
  random by the authors; the validation and test class names are carried below. 600 images per class, 32x32x3.
* **FC100** (Oreshkin, Rodríguez López & Lacoste 2018): CIFAR-100 split by superclass, 12 / 4 / 4 superclasses
  (60 / 20 / 20 classes), so test classes share no superclass with training ones. 600 images per class, 32x32x3.
* **CUB** (Wah et al. 2011, the 100 / 50 / 50 class split of Chen, Liu, Kira, Wang & Huang 2019): class ``i``
  (0-based, in the dataset's order 001..200) is meta-training if ``i % 2 == 0``, validation if ``i % 4 == 1`` and
  test if ``i % 4 == 3``. Whole images resized to 84x84 RGB (Lanczos), as Chen et al. feed them at test time
  (``crop="bbox"`` crops to the annotated bounding box first, as some later work does); every class is cut to
  the smallest class's number of images (the episode sampler draws from a dense array).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from metajax._src.data.omniglot import ENV_VAR, ClassImages, DataError, DataNotFoundError

SPLITS = ("train", "val", "test")

CIFAR_FS_CLASSES = {
    "val": (
        "beaver", "otter", "flatfish", "shark", "lamp", "television", "beetle", "butterfly",
        "sea", "camel", "cattle", "crab", "crocodile", "maple_tree", "motorcycle", "tractor",
    ),
    "test": (
        "whale", "poppy", "rose", "sweet_pepper", "telephone", "bed", "table", "wardrobe", "leopard", "plain",
        "chimpanzee", "fox", "snail", "worm", "baby", "man", "woman", "bicycle", "pickup_truck", "rocket",
    ),
}  # fmt: skip
"""CIFAR-FS validation (16) and test (20) classes (Bertinetto et al. 2019); the other 64 are meta-training."""

FC100_SUPERCLASSES = {
    "val": ("large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates", "small_mammals"),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}
"""FC100 validation and test superclasses (Oreshkin et al. 2018); the other 12 are meta-training."""

CUB_IMAGE_SIZE = 84
CUB_CROPS = ("none", "bbox")

DATASETS = {"cifar_fs": "cifar100", "fc100": "cifar100", "cub": "caltech_birds2011"}
"""The few-shot datasets of this module and the TFDS dataset each reads."""

DATASET_OF = {"cifar100": "cifar_fs|fc100", "caltech_birds2011": "cub"}


def default_data_dir() -> Path:
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else Path.home() / "tensorflow_datasets"


def missing_message(tfds_name: str, root: Path) -> str:
    return (
        f"the TFDS dataset {tfds_name!r} is not in {str(root)!r} (no {tfds_name}/<version>/dataset_info.json). "
        f"metajax does not download data. On a machine with internet run `tfds build {tfds_name} --data_dir DIR` "
        f"(or tfds.builder({tfds_name!r}, data_dir=DIR).download_and_prepare(); the array_record file format is "
        f"what metajax reads: add --file_format=array_record), copy DIR/{tfds_name} into {str(root)!r}, then pass "
        f"--data-dir (or set ${ENV_VAR}) and check it with `metajax data check {DATASET_OF[tfds_name]} --data-dir DIR`."
    )


def resolve_root(tfds_name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory holding ``<tfds_name>/<version>/dataset_info.json``.

    Raises:
      DataNotFoundError: with instructions, when it does not.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if not any((root / tfds_name).glob("*/dataset_info.json")):
        raise DataNotFoundError(missing_message(tfds_name, root))
    return root


def _read(tfds_name: str, root: Path, split: str) -> tuple[list[dict], object]:
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(tfds_name, split=split, data_dir=str(root), download=False)
        return [source[i] for i in range(len(source))], source.dataset_info
    except Exception as err:  # noqa: BLE001 - riegeli, protobuf and array_record raise many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DataError(
            f"the TFDS dataset {tfds_name!r} in {root} cannot be read ({type(err).__name__}: {first}): a file there "
            f"is missing, truncated or not in array_record format. Prepare it again (`tfds build {tfds_name} "
            "--file_format=array_record`)."
        ) from None


def _dense(by_class: dict[int, list[np.ndarray]], classes: list[int], coarse: dict[int, int]) -> ClassImages:
    per_class = min(len(by_class[c]) for c in classes)
    images = np.stack([np.stack(by_class[c][:per_class]) for c in classes])
    ids = np.asarray(classes)
    return ClassImages(images, ids, np.asarray([coarse.get(c, 0) for c in classes]), np.zeros_like(ids))


@functools.lru_cache(maxsize=2)
def _cifar100(root: str) -> tuple[dict[int, list[np.ndarray]], dict[int, int], list[str], list[str]]:
    by_class: dict[int, list[np.ndarray]] = {}
    coarse: dict[int, int] = {}
    info = None
    for split in ("train", "test"):
        records, info = _read("cifar100", Path(root), split)
        for r in records:
            label = int(r["label"])
            by_class.setdefault(label, []).append(np.asarray(r["image"], np.uint8))
            coarse[label] = int(r["coarse_label"])
    fine_names = list(info.features["label"].names)
    coarse_names = list(info.features["coarse_label"].names)
    return by_class, coarse, fine_names, coarse_names


def _check_names(wanted, names, what: str) -> None:
    missing = sorted(set(wanted) - set(names))
    if missing:
        raise DataError(f"cifar100's {what} names lack {missing}: this is not the CIFAR-100 that TFDS prepares.")


def load_cifar_fs(data_dir: str | os.PathLike | None = None) -> dict[str, ClassImages]:
    """CIFAR-FS as ``{"train", "val", "test"}``: 64 / 16 / 20 classes of 600 uint8 ``32x32x3`` images.

    ``character`` holds the CIFAR-100 fine label, ``alphabet`` the superclass.

    Raises:
      DataNotFoundError: ``cifar100`` is not prepared under the data directory (the message says how).
      DataError: it cannot be read, or its class names are not CIFAR-100's.
    """
    by_class, coarse, names, _ = _cifar100(str(resolve_root("cifar100", data_dir).resolve()))
    held = {s: CIFAR_FS_CLASSES[s] for s in ("val", "test")}
    _check_names([n for s in held.values() for n in s], names, "fine label")
    ids = {s: sorted(names.index(n) for n in held[s]) for s in held}
    ids["train"] = [i for i in range(len(names)) if i not in ids["val"] and i not in ids["test"]]
    return {s: _dense(by_class, ids[s], coarse) for s in SPLITS}


def load_fc100(data_dir: str | os.PathLike | None = None) -> dict[str, ClassImages]:
    """FC100 as ``{"train", "val", "test"}``: 60 / 20 / 20 classes (12 / 4 / 4 superclasses) of 600 images.

    Raises:
      DataNotFoundError, DataError: as :func:`load_cifar_fs`.
    """
    by_class, coarse, _, coarse_names = _cifar100(str(resolve_root("cifar100", data_dir).resolve()))
    _check_names([n for s in FC100_SUPERCLASSES.values() for n in s], coarse_names, "superclass")
    supers = {s: {coarse_names.index(n) for n in FC100_SUPERCLASSES[s]} for s in ("val", "test")}
    supers["train"] = set(range(len(coarse_names))) - supers["val"] - supers["test"]
    return {s: _dense(by_class, sorted(c for c in by_class if coarse[c] in supers[s]), coarse) for s in SPLITS}


def cub_split(label: int) -> str:
    """The split of CUB class ``label`` (0-based) in Chen et al. (2019): even train, 1 mod 4 val, 3 mod 4 test."""
    return "train" if label % 2 == 0 else ("val" if label % 4 == 1 else "test")


def _cub_image(image: np.ndarray, bbox, crop: str, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    if crop == "bbox":
        ymin, xmin, ymax, xmax = (float(v) for v in np.asarray(bbox).ravel()[:4])  # TFDS: normalised
        w, h = im.size
        box = (int(xmin * w), int(ymin * h), max(int(np.ceil(xmax * w)), int(xmin * w) + 1),
               max(int(np.ceil(ymax * h)), int(ymin * h) + 1))  # fmt: skip
        im = im.crop(box)
    return np.asarray(im.resize((size, size), Image.LANCZOS), dtype=np.uint8)


@functools.lru_cache(maxsize=2)
def _cub(root: str, crop: str, size: int) -> dict[str, ClassImages]:
    by_class: dict[int, list[np.ndarray]] = {}
    for split in ("train", "test"):
        records, _ = _read("caltech_birds2011", Path(root), split)
        for r in records:
            by_class.setdefault(int(r["label"]), []).append(_cub_image(r["image"], r.get("bbox"), crop, size))
    if len(by_class) != 200:
        raise DataError(f"caltech_birds2011 in {root} holds {len(by_class)} classes, expected 200.")
    return {s: _dense(by_class, [c for c in sorted(by_class) if cub_split(c) == s], {}) for s in SPLITS}


def load_cub(
    data_dir: str | os.PathLike | None = None, crop: str = "none", image_size: int = CUB_IMAGE_SIZE
) -> dict[str, ClassImages]:
    """CUB-200-2011 as ``{"train", "val", "test"}``: 100 / 50 / 50 bird species, uint8 RGB images.

    Args:
      data_dir: the TFDS data directory holding ``caltech_birds2011``.
      crop: ``"none"`` (the whole image) or ``"bbox"`` (the annotated bounding box), then resized.
      image_size: output height and width (84).

    Raises:
      DataNotFoundError, DataError: as :func:`load_cifar_fs`.
    """
    if crop not in CUB_CROPS:
        raise ValueError(f"crop must be one of {CUB_CROPS}, got {crop!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}.")
    return dict(_cub(str(resolve_root("caltech_birds2011", data_dir).resolve()), crop, image_size))


def load_tfds_fewshot(name: str, data_dir: str | os.PathLike | None = None, **kwargs) -> dict[str, ClassImages]:
    """``load_cifar_fs``, ``load_fc100`` or ``load_cub`` by name (:data:`DATASETS`)."""
    loaders = {"cifar_fs": load_cifar_fs, "fc100": load_fc100, "cub": load_cub}
    if name not in loaders:
        raise ValueError(f"dataset must be one of {sorted(loaders)}, got {name!r}.")
    return loaders[name](data_dir, **kwargs)
