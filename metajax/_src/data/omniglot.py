"""Omniglot through tensorflow-datasets, with the standard few-shot splits.

Data: the TFDS ``omniglot`` dataset (3.0.0), read with ``tfds.data_source``
(array_record files, no TensorFlow needed), or, where no TFDS copy exists, the
original ``images_background.zip`` and ``images_evaluation.zip`` read
directly, from a data directory resolved as the ``data_dir`` argument, else
``$METAJAX_DATA_DIR``, else ``~/tensorflow_datasets``. Both sources give
identical arrays. Nothing is downloaded at run time: a missing directory
raises :class:`DataNotFoundError` saying what to get and where to put it.

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

import functools
import hashlib
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


class DataError(ValueError):
    """A data file exists but cannot be read (truncated, corrupted, or not the expected data set)."""


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
    """What is wrong with the directories tried, each in its own words, and how to get the data."""
    return (
        f"Omniglot (TFDS 'omniglot' 3.0.0, or the original zips) not found: {'; '.join(_diagnose(p) for p in tried)}. "
        f"Point --data-dir or ${ENV_VAR} at a directory that contains either omniglot/3.0.0/ (a prepared TFDS "
        "copy: tfds.builder('omniglot').download_and_prepare() on a machine with internet, or offline from the "
        "four zips with `metajax data prepare omniglot --zips ZIPDIR --data-dir DIR`) or the original "
        "images_background.zip and images_evaluation.zip from https://github.com/brendenlake/omniglot (folder "
        "python/); check it with `metajax data check omniglot --data-dir DIR`."
    )


def _diagnose(path: Path) -> str:
    """One phrase saying why ``path`` is not an Omniglot data directory."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is a file, not a directory"
    if path.name == "3.0.0" and (path / "dataset_info.json").is_file():
        return f"{path} is the TFDS dataset itself: give the directory two levels up, {path.parent.parent}"
    if path.name == "omniglot" and (path / "3.0.0").is_dir():
        return f"{path} is the dataset's folder: give the directory above it, {path.parent}"
    if (path / "omniglot").is_dir():
        versions = sorted(p.name for p in (path / "omniglot").iterdir() if p.is_dir())
        if "3.0.0" not in versions:
            return f"{path / 'omniglot'} holds versions {versions or 'none'}, not 3.0.0"
        return f"{path / 'omniglot' / '3.0.0'} has no dataset_info.json (an unfinished preparation?)"
    zips = [n for n in ("background", "evaluation") if (path / f"images_{n}.zip").is_file()]
    if len(zips) == 1:
        other = "evaluation" if zips[0] == "background" else "background"
        return f"{path} has images_{zips[0]}.zip but not images_{other}.zip"
    return f"{path} holds neither omniglot/3.0.0/ nor the two zips"


def default_data_dir() -> Path:
    """``$METAJAX_DATA_DIR`` if set, else ``~/tensorflow_datasets`` (TFDS's own default)."""
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else Path.home() / "tensorflow_datasets"


def resolve_data_dir(data_dir: str | os.PathLike | None = None, allow_zips: bool = True) -> Path:
    """Find the data directory: one holding ``omniglot/3.0.0`` (TFDS) or the two original zips.

    Raises:
      DataNotFoundError: with instructions, if none of the candidates holds it.
    """
    candidates = [Path(data_dir) if data_dir is not None else default_data_dir()]
    for c in candidates:
        if (c / "omniglot" / "3.0.0" / "dataset_info.json").is_file():
            return c
        if allow_zips and all((c / f"images_{n}.zip").is_file() for n in ("background", "evaluation")):
            return c
    raise DataNotFoundError(missing_data_message(candidates))


def _resize(gray: np.ndarray) -> np.ndarray:
    """105x105 uint8 (255 = white background) -> 28x28 uint8 ink intensity."""
    from PIL import Image

    # Lanczos resize of the 0..255 image as in the MAML code, then invert so ink is high.
    im = Image.fromarray(gray)
    return 255 - np.asarray(im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.uint8)


def _canonical(groups: dict[tuple[str, int], list[np.ndarray]], alphabets: list[str]) -> ClassImages:
    """Characters sorted by (alphabet, number), drawings by content: the same arrays from any source."""
    keys = sorted(groups)
    images, alph = [], []
    for key in keys:
        drawings = groups[key]
        if len(drawings) != EXAMPLES_PER_CLASS:
            raise ValueError(f"omniglot character {key}: expected {EXAMPLES_PER_CLASS} drawings, got {len(drawings)}.")
        drawings = sorted(drawings, key=lambda d: hashlib.sha1(d.tobytes()).hexdigest())
        images.append(np.stack([_resize(d) for d in drawings]))
        alph.append(alphabets.index(key[0]))
    n = len(keys)
    return ClassImages(np.stack(images), np.arange(n), np.asarray(alph), np.zeros(n, np.int64))


def _from_tfds(root: Path) -> dict[str, dict[tuple[str, int], list[np.ndarray]]]:
    where = root / "omniglot" / "3.0.0"
    try:
        return _read_tfds(root)
    except Exception as err:  # noqa: BLE001 - riegeli, protobuf and array_record raise many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DataError(
            f"the TFDS copy in {where} cannot be read ({type(err).__name__}: {first}): a file there is truncated "
            "or damaged. Prepare it again (`metajax data prepare omniglot --zips ZIPDIR --data-dir DIR`), or "
            "point --data-dir at the two original zips instead."
        ) from None


def _read_tfds(root: Path) -> dict[str, dict[tuple[str, int], list[np.ndarray]]]:
    import tensorflow_datasets as tfds

    source = tfds.data_source("omniglot", data_dir=str(root))
    out = {}
    for name, split in (("background", "train"), ("evaluation", "test")):
        ds = source[split]
        names = ds.dataset_info.features["label"].names  # "Alphabet_12" (0-based character number)
        groups: dict[tuple[str, int], list[np.ndarray]] = {}
        for r in ds.__getitems__(list(range(len(ds)))):
            alphabet, number = names[r["label"]].rsplit("_", 1)
            # TFDS stores {0, 1} x 3 channels with 1 = white.
            groups.setdefault((alphabet, int(number) + 1), []).append((r["image"][..., 0] * 255).astype(np.uint8))
        out[name] = groups
    return out


def _from_zips(root: Path) -> dict[str, dict[tuple[str, int], list[np.ndarray]]]:
    import io
    import zipfile

    from PIL import Image

    out = {}
    for name in ("background", "evaluation"):
        path = root / f"images_{name}.zip"
        groups: dict[tuple[str, int], list[np.ndarray]] = {}
        try:
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if not member.endswith(".png"):
                        continue
                    parts = member.split("/")
                    if len(parts) != 4 or not parts[2].startswith("character"):
                        raise DataError(
                            f"{path} does not have the layout of Omniglot's images_{name}.zip "
                            f"(images_{name}/ALPHABET/characterNN/DRAWING.png); found {member!r}. Use the original "
                            "zips from https://github.com/brendenlake/omniglot (folder python/)."
                        )
                    _, alphabet, character, _ = parts
                    with Image.open(io.BytesIO(z.read(member))) as im:
                        gray = np.asarray(im.convert("L"), dtype=np.uint8)
                    groups.setdefault((alphabet, int(character.removeprefix("character"))), []).append(gray)
        except (zipfile.BadZipFile, EOFError, OSError, zlib_error()) as err:
            raise DataError(
                f"{path} cannot be read as a zip ({type(err).__name__}: {err}): it is truncated or damaged. "
                "Download it again from https://github.com/brendenlake/omniglot (folder python/)."
            ) from None
        if not groups:
            raise DataError(f"{path} holds no PNG drawings: it is not Omniglot's images_{name}.zip.")
        out[name] = groups
    return out


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def load_characters(data_dir: str | os.PathLike | None = None, source: str = "auto") -> dict[str, ClassImages]:
    """Load the background and evaluation characters (no rotations).

    Args:
      data_dir: a directory holding the TFDS copy (``omniglot/3.0.0``) or the
        original ``images_background.zip`` and ``images_evaluation.zip``.
      source: ``"tfds"``, ``"zips"`` or ``"auto"`` (TFDS if present, else zips).

    Returns:
      ``{"background": ..., "evaluation": ...}`` (964 and 659 characters, 20
      drawings each) in a canonical order (characters by alphabet and number,
      drawings by content), identical whichever source they came from, so the
      seeded splits are the same too.
    """
    if source not in ("auto", "tfds", "zips"):
        raise ValueError(f"source must be 'auto', 'tfds' or 'zips', got {source!r}.")
    root = resolve_data_dir(data_dir, allow_zips=source != "tfds")
    use_tfds = source == "tfds" or (source == "auto" and (root / "omniglot" / "3.0.0" / "dataset_info.json").is_file())
    if not use_tfds and not all((root / f"images_{n}.zip").is_file() for n in ("background", "evaluation")):
        raise DataNotFoundError(missing_data_message([root]))
    return dict(_load_cached(str(root.resolve()), use_tfds))


@functools.lru_cache(maxsize=2)
def _load_cached(root: str, use_tfds: bool) -> dict[str, ClassImages]:
    """Decoding 32,460 drawings takes seconds: do it once per process and data directory."""
    groups = _from_tfds(Path(root)) if use_tfds else _from_zips(Path(root))
    alphabets = sorted({a for part in groups.values() for a, _ in part})
    bg, ev = _canonical(groups["background"], alphabets), _canonical(groups["evaluation"], alphabets)
    for ci in (bg, ev):  # shared between callers: make accidental in-place edits fail loudly
        for arr in ci:
            arr.setflags(write=False)
    # global character ids: background 0..963, evaluation 964..1622
    ev = ev._replace(character=ev.character + len(bg.character))
    ev.character.setflags(write=False)
    return {"background": bg, "evaluation": ev}


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
