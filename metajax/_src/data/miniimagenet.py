"""Mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split) from user-supplied files.

The data cannot be downloaded by metajax (ImageNet's licence). Supported
layouts under a root directory (``data_dir`` argument, else
``$METAJAX_MINIIMAGENET_DIR``):

* **CSV + images** (Ravi & Larochelle): ``train.csv``, ``val.csv``,
  ``test.csv`` with a ``filename,label`` header, and ``images/<filename>``.
* **Folders**: ``train/<class>/<image>``, ``val/<class>/...``,
  ``test/<class>/...``.
* **Pickle caches** (``mini-imagenet-cache-{train,val,test}.pkl``, a dict with
  ``image_data`` and ``class_dict``): unpickling can run arbitrary code, so
  they are never opened unless ``allow_pickle=True`` is passed explicitly
  (CLI: ``--set data.allow_pickle=True``); they are then converted once to
  ``.npz`` files next to them, which later runs read without unpickling.

Images are resized to 84x84 RGB (Lanczos) and kept as uint8
``(classes, examples, 84, 84, 3)``; decoded splits are cached in
``<root>/metajax_cache/<split>.npz``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from metajax._src.data.omniglot import ClassImages, DataNotFoundError

ENV_VAR = "METAJAX_MINIIMAGENET_DIR"
IMAGE_SIZE = 84
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def missing_message(root: Path) -> str:
    return (
        f"Mini-ImageNet not found in {str(root)!r}. metajax cannot download it. Put one of these layouts there: "
        "(1) train.csv, val.csv, test.csv (Ravi & Larochelle split, header filename,label) and images/ with the "
        "84x84 or original JPEGs; (2) train/, val/, test/ folders with one sub-folder per class; or (3) the "
        "mini-imagenet-cache-{train,val,test}.pkl files plus --set data.allow_pickle=True (pickles can run code "
        f"when opened: only use files you trust). Then pass --data-dir or set ${ENV_VAR}."
    )


def user_data_root(data_dir: str | os.PathLike | None, env_var: str, missing: Callable[[Path], str]) -> Path:
    """The directory of a data set the user supplies: ``data_dir``, else ``$env_var``; neither raises
    :class:`DataNotFoundError` with ``missing(where)`` (what to get and where to put it)."""
    if data_dir is None:
        if not os.environ.get(env_var):
            raise DataNotFoundError(missing(Path(f"${env_var} (unset)")))
        data_dir = os.environ[env_var]
    return Path(data_dir)


def resolve_root(data_dir: str | os.PathLike | None) -> Path:
    return user_data_root(data_dir, ENV_VAR, missing_message)


def rgb_84(im) -> np.ndarray:
    """A PIL image as uint8 RGB ``(84, 84, 3)``, resized with Lanczos when it is another size."""
    from PIL import Image

    im = im.convert("RGB")
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return rgb_84(im)


def _group(files_by_class: dict[str, list[Path]], split: str) -> ClassImages:
    names = sorted(files_by_class)
    if not names:
        raise ValueError(f"mini-imagenet {split}: no classes found.")
    # 600 per class in the standard split; a dense array needs one count, so keep the smallest.
    per_class = min(len(files_by_class[n]) for n in names)
    images = np.stack([np.stack([_load_image(p) for p in sorted(files_by_class[n])[:per_class]]) for n in names])
    ids = np.arange(len(names))
    return ClassImages(images, ids, np.zeros_like(ids), np.zeros_like(ids))


def _from_csv(root: Path, split: str) -> dict[str, list[Path]]:
    by_class: dict[str, list[Path]] = {}
    with open(root / f"{split}.csv", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(
                f"{root / f'{split}.csv'}: expected a header with filename,label, got {reader.fieldnames}."
            )
        for row in reader:
            path = root / "images" / row["filename"]
            if not path.is_file():
                raise DataNotFoundError(f"{split}.csv lists {row['filename']} but {path} does not exist.")
            by_class.setdefault(row["label"], []).append(path)
    return by_class


def _from_folders(root: Path, split: str) -> dict[str, list[Path]]:
    return {
        d.name: [p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        for d in sorted((root / split).iterdir())
        if d.is_dir()
    }


def _from_pickle(path: Path, split: str) -> ClassImages:
    import pickle  # noqa: S403 - only reached with allow_pickle=True, which the caller chose

    with open(path, "rb") as f:
        data = pickle.load(f)  # noqa: S301
    images, class_dict = np.asarray(data["image_data"], np.uint8), data["class_dict"]
    names = sorted(class_dict)
    per_class = min(len(class_dict[n]) for n in names)
    stacked = np.stack([images[np.asarray(class_dict[n][:per_class])] for n in names])
    ids = np.arange(len(names))
    return ClassImages(stacked, ids, np.zeros_like(ids), np.zeros_like(ids))


def load_split(root: Path, split: str, allow_pickle: bool = False) -> ClassImages:
    """One split as :class:`ClassImages` (uint8 ``(classes, examples, 84, 84, 3)``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    cache = root / "metajax_cache" / f"{split}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return ClassImages(z["images"], z["character"], z["alphabet"], z["rotation"])
    pkl = root / f"mini-imagenet-cache-{split}.pkl"
    if (root / f"{split}.csv").is_file():
        out = _group(_from_csv(root, split), split)
    elif (root / split).is_dir():
        out = _group(_from_folders(root, split), split)
    elif pkl.is_file():
        if not allow_pickle:
            raise ValueError(
                f"{pkl} is a pickle file, which can run arbitrary code when opened, so metajax does not open it by "
                "default. If you trust the file, pass allow_pickle=True (CLI: --set data.allow_pickle=True) to "
                "convert it once to a pickle-free cache; better, use the CSV + images or folder layout."
            )
        out = _from_pickle(pkl, split)
    else:
        raise DataNotFoundError(missing_message(root))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out._asdict())
    return out


def load_miniimagenet(data_dir: str | os.PathLike | None = None, allow_pickle: bool = False) -> dict[str, ClassImages]:
    """Mini-ImageNet as ``{"train", "val", "test"}`` (64 / 16 / 20 classes in the standard split).

    Raises:
      DataNotFoundError: no supported layout found (the message lists them).
      ValueError: a pickle file without ``allow_pickle=True``, or a malformed CSV.
    """
    root = resolve_root(data_dir)
    if not root.is_dir():
        raise DataNotFoundError(missing_message(root))
    return {split: load_split(root, split, allow_pickle) for split in SPLITS}
