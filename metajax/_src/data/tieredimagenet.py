"""tiered-ImageNet (Ren et al. 2018) from user-supplied files, read lazily from a memory-mapped cache.

tiered-ImageNet has 608 ImageNet classes grouped into 34 categories, split by category (20 / 6 / 8) into
351 training, 97 validation and 160 test classes, 732 to 1,300 images per class (779,165 in all) at 84x84. As one
uint8 array that is 16.5 GB, too much to keep on an accelerator beside a ResNet-12, so metajax keeps each split
as one flat, class-major uint8 file memory-mapped on the host (:class:`RaggedClassImages`) and draws episodes
there (:func:`host_episodes`; inside ``jit`` through a host callback, :func:`tiered_episode_sampler`): only the
images of the episodes drawn are read and sent to the device.

The data cannot be downloaded by metajax (ImageNet's licence). Supported layouts under a root directory
(``data_dir`` argument, else ``$METAJAX_TIEREDIMAGENET_DIR``):

* **Folders**: ``train/<class>/<image>``, ``val/<class>/...``, ``test/<class>/...`` (any size; resized to
  84x84 RGB with Lanczos).
* **The published files** of Ren et al. (``{split}_images_png.pkl``, a list of PNG-encoded images, with
  ``{split}_labels.pkl``) or their decoded form used by later work (``{split}_images.npz`` holding ``images``
  ``(N, 84, 84, 3)`` uint8, with ``{split}_labels.pkl``). The labels are pickles, which can run code when
  opened: they are read only with ``allow_pickle=True`` (CLI: ``--set data.allow_pickle=True``), then through an
  unpickler that accepts nothing but numpy arrays, lists, dicts and strings.

Either is converted once to ``<root>/metajax_cache/{split}.images.npy`` (class-major) and ``{split}.index.npz``
(class offsets, names, categories), which later runs memory-map without decoding or unpickling.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax._src.base import Task, check_positive_int
from metajax._src.data.episodes import check_episode_args
from metajax._src.data.miniimagenet import IMAGE_SIZE, IMAGE_SUFFIXES, rgb_84, user_data_root
from metajax._src.data.omniglot import DataError, DataNotFoundError

ENV_VAR = "METAJAX_TIEREDIMAGENET_DIR"
SPLITS = ("train", "val", "test")
CACHE_DIR = "metajax_cache"


class RaggedClassImages(NamedTuple):
    """Images of classes with different numbers of examples, stored flat and class-major.

    Attributes:
      images: uint8 ``(N, H, W, C)`` (a read-only memory map when loaded from the cache); class ``c`` holds
        ``images[offsets[c]:offsets[c + 1]]``.
      offsets: int64 ``(classes + 1,)``.
      names: ``(classes,)`` class names (ImageNet synset ids or folder names).
      category: int64 ``(classes,)``: the tiered-ImageNet category (``label_general``), ``-1`` where unknown.
    """

    images: np.ndarray
    offsets: np.ndarray
    names: np.ndarray
    category: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def missing_message(root: Path) -> str:
    return (
        f"tiered-ImageNet not found in {str(root)!r}. metajax cannot download it (ImageNet's licence). Put one of "
        "these layouts there: (1) train/, val/, test/ folders with one sub-folder of images per class; or (2) the "
        "files of Ren et al. 2018, {train,val,test}_images_png.pkl (or the decoded {split}_images.npz) with "
        "{split}_labels.pkl, plus --set data.allow_pickle=True (the labels are pickles, which can run code when "
        f"opened: only use files you trust). Then pass --data-dir or set ${ENV_VAR}."
    )


def resolve_root(data_dir: str | os.PathLike | None) -> Path:
    return user_data_root(data_dir, ENV_VAR, missing_message)


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return rgb_84(im)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"tiered-ImageNet: {path} is not a readable image ({err}).") from None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts, numbers and strings; refuses every other global (no code runs)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "list"),
        ("builtins", "dict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol 2: encode(text, "latin1"), nothing else
            return _latin1_bytes
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays, lists and dicts")


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """What protocol 2 pickles bytes as, ``_codecs.encode(text, "latin1")``, and only that (no other codec)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}): only latin1 text")
    return text.encode("latin1")


def _unpickle(path: Path):
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, encoding="latin1").load()
    except Exception as err:  # noqa: BLE001 - a damaged pickle raises anything (MemoryError, OverflowError, ...)
        raise DataError(f"tiered-ImageNet: cannot read {path}: {type(err).__name__}: {err}") from None


def _folders_to_cache(root: Path, split: str, out_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode ``root/split/<class>/<image>`` into a uint8 memory map at ``out_path``, one image at a time (the
    split never sits in memory whole); returns offsets, names and categories."""
    dirs = sorted(d for d in (root / split).iterdir() if d.is_dir())
    if not dirs:
        raise DataError(f"tiered-ImageNet {split}: {root / split} has no class folders.")
    files = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for d in dirs}
    empty = [n for n, f in files.items() if not f]
    if empty:
        raise DataError(f"tiered-ImageNet {split}: class folders without images: {empty[:5]}.")
    counts = np.array([len(files[d.name]) for d in dirs])
    total = int(counts.sum())
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(total, IMAGE_SIZE, IMAGE_SIZE, 3))
    print(f"tiered-ImageNet {split}: converting {total} images of {len(dirs)} classes once ...", file=sys.stderr)
    i = 0
    for d in dirs:
        for path in files[d.name]:
            out[i] = _load_image(path)
            i += 1
    out.flush()
    del out
    names = np.array([d.name for d in dirs])
    return np.concatenate([[0], np.cumsum(counts)]), names, np.full(len(dirs), -1)


def _from_published(root: Path, split: str, allow_pickle: bool) -> RaggedClassImages:
    labels_path = root / f"{split}_labels.pkl"
    if not allow_pickle:
        raise ValueError(
            f"{labels_path} is a pickle file, which can run arbitrary code when opened, so metajax does not open it "
            "by default. If you trust the file, pass allow_pickle=True (CLI: --set data.allow_pickle=True) to "
            "convert it once to a pickle-free cache (read with an unpickler that accepts only arrays); better, "
            "use the folder layout."
        )
    labels = _unpickle(labels_path)
    if not isinstance(labels, dict) or "label_specific" not in labels:
        raise DataError(f"tiered-ImageNet: {labels_path} holds no 'label_specific' labels.")
    specific = np.asarray(labels["label_specific"], np.int64)
    general = np.asarray(labels.get("label_general", np.full(len(specific), -1)), np.int64)
    npz = root / f"{split}_images.npz"
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            images = np.asarray(z["images"], np.uint8)
    else:
        encoded = _unpickle(root / f"{split}_images_png.pkl")
        from PIL import Image

        images = np.stack([rgb_84(Image.open(io.BytesIO(np.asarray(b, np.uint8).tobytes()))) for b in encoded])
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or len(images) != len(specific):
        raise DataError(
            f"tiered-ImageNet {split}: {len(specific)} labels for images of shape {images.shape}; expected "
            f"({len(specific)}, {IMAGE_SIZE}, {IMAGE_SIZE}, 3)."
        )
    order = np.argsort(specific, kind="stable")
    classes, counts = np.unique(specific, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)])[:-1]
    names_str = labels.get("label_specific_str")
    names = np.array([str(names_str[c]) for c in classes] if names_str is not None else [str(c) for c in classes])
    return RaggedClassImages(
        images[order], np.concatenate([[0], np.cumsum(counts)]), names, general[order][first].astype(np.int64)
    )


def _cache_paths(root: Path, split: str) -> tuple[Path, Path]:
    return root / CACHE_DIR / f"{split}.images.npy", root / CACHE_DIR / f"{split}.index.npz"


def _source_stamp(root: Path, split: str) -> str:
    """What the published layout's cache was converted from: its files' names, sizes and modification times
    (``""`` for the folder layout, whose class folders and image counts are compared instead)."""
    if (root / split).is_dir():
        return ""
    files = sorted(root.glob(f"{split}_*"))
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files if p.is_file())


def _check_fresh(root: Path, split: str, names: np.ndarray, counts: np.ndarray, source: str | None, where: Path):
    """Refuse a cache converted from other files than those now in ``root`` (``DataError`` saying what changed)."""
    stale = None
    if (root / split).is_dir():  # the folder layout: the class folders and their image counts
        now = {
            d.name: sum(1 for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            for d in (root / split).iterdir()
            if d.is_dir()
        }
        then = {str(n): int(c) for n, c in zip(names, counts, strict=True)}
        added, removed = sorted(set(now) - set(then)), sorted(set(then) - set(now))
        changed = sorted(n for n in set(now) & set(then) if now[n] != then[n])
        if added or removed or changed:
            parts = [
                f"{what} {len(v)} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                for what, v in (("added", added), ("removed", removed), ("changed image count", changed))
                if v
            ]
            stale = f"class folders since the conversion: {'; '.join(parts)}"
    elif source is not None and source != _source_stamp(root, split):  # before the stamp existed: not checked
        stale = f"the files {split}_* changed since the conversion (size or modification time)"
    if stale:
        raise DataError(
            f"tiered-ImageNet {split}: the cache in {where} was converted from other files: {stale}. Delete "
            f"{where} to convert again from the files now in {root}."
        )


def load_split(root: Path, split: str, allow_pickle: bool = False) -> RaggedClassImages:
    """One split, memory-mapped from the cache (converted from the user's files on first use)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    images_path, index_path = _cache_paths(root, split)
    if not (images_path.is_file() and index_path.is_file()):
        if not (root / split).is_dir() and not (root / f"{split}_labels.pkl").is_file():
            raise DataNotFoundError(missing_message(root))
        images_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = images_path.with_name(f"{split}.images.partial.npy")
        try:
            if (root / split).is_dir():
                offsets, names, category = _folders_to_cache(root, split, tmp)
            else:
                out = _from_published(root, split, allow_pickle)
                np.save(tmp, out.images)
                offsets, names, category = out.offsets, out.names, out.category
            np.savez(index_path, offsets=offsets, names=names, category=category, source=_source_stamp(root, split))
            tmp.replace(images_path)  # the image file last: a cache is complete when both exist
        except BaseException:  # a failed or interrupted conversion leaves no full-size partial file behind
            tmp.unlink(missing_ok=True)
            raise
    try:
        images = np.load(images_path, mmap_mode="r", allow_pickle=False)
        with np.load(index_path, allow_pickle=False) as z:
            offsets, names, category = z["offsets"], z["names"], z["category"]
            source = str(z["source"]) if "source" in z.files else None
    except (OSError, ValueError, KeyError) as err:
        raise DataError(
            f"tiered-ImageNet: the cache in {images_path.parent} is damaged ({err}); delete it to convert again."
        ) from None
    if images.ndim != 4 or offsets[-1] != len(images) or len(names) != len(offsets) - 1:
        raise DataError(
            f"tiered-ImageNet: the cache in {images_path.parent} is inconsistent; delete it to convert again."
        )
    _check_fresh(root, split, names, np.diff(offsets), source, images_path.parent)
    return RaggedClassImages(images, offsets.astype(np.int64), names, category.astype(np.int64))


def load_tieredimagenet(
    data_dir: str | os.PathLike | None = None, allow_pickle: bool = False
) -> dict[str, RaggedClassImages]:
    """tiered-ImageNet as ``{"train", "val", "test"}`` (351 / 97 / 160 classes in the published split),
    memory-mapped.

    Raises:
      DataNotFoundError: no supported layout found (the message lists them).
      ValueError: the published pickles without ``allow_pickle=True``.
      DataError: a damaged file, or splits that share a class or a category.
    """
    root = resolve_root(data_dir)
    if not root.is_dir():
        raise DataNotFoundError(missing_message(root))
    parts = {split: load_split(root, split, allow_pickle) for split in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = set(parts[a].names.tolist()) & set(parts[b].names.tolist())
            if shared:
                raise DataError(f"tiered-ImageNet: splits {a} and {b} share classes {sorted(shared)[:5]}.")
            cats = (set(parts[a].category.tolist()) & set(parts[b].category.tolist())) - {-1}
            if cats:
                raise DataError(f"tiered-ImageNet: splits {a} and {b} share categories {sorted(cats)[:5]}.")
    return parts


def _gather(data: RaggedClassImages, flat: np.ndarray) -> np.ndarray:
    """``data.images[flat]``, read from the memory map in file order."""
    order = np.argsort(flat)
    x = np.empty((flat.size, *data.images.shape[1:]), np.uint8)
    x[order] = data.images[flat[order]]
    return x


def _on_host(fn: Callable[[np.ndarray], object], spec: object) -> Callable[[jax.Array], object]:
    """``fn(key_data)`` as a traceable function of a PRNG key (``jax.pure_callback``, results shaped as ``spec``)."""

    def call(key: jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        return jax.pure_callback(lambda k: fn(np.asarray(k)), spec, key, vmap_method="sequential")

    return call


def _rng(key: np.ndarray) -> np.random.Generator:
    return np.random.default_rng(np.asarray(key, np.uint32).ravel().astype(np.uint64).tolist())


def host_episodes(
    key: np.ndarray, data: RaggedClassImages, num_tasks: int, ways: int, shots: int, queries: int
) -> Task:
    """``num_tasks`` N-way K-shot episodes drawn on the host, a pure function of ``key`` (a PRNG key's data).

    Classes are drawn without replacement and relabelled 0..ways-1 in the order drawn; each class's examples
    without replacement, the first ``shots`` for the support set and the next ``queries`` for the query set.
    Images stay uint8 ``(num_tasks, ways * n, H, W, C)`` (what crosses to the device); labels int32.
    """
    counts = data.counts
    check_episode_args(data.num_classes, int(counts.min()), ways, shots, queries)
    rng = _rng(key)
    n = shots + queries
    index = np.empty((num_tasks, ways, n), np.int64)
    for t in range(num_tasks):
        classes = rng.choice(data.num_classes, ways, replace=False)
        for w, c in enumerate(classes):
            index[t, w] = data.offsets[c] + rng.choice(counts[c], n, replace=False)
    x = _gather(data, index.ravel()).reshape(num_tasks, ways, n, *data.images.shape[1:])
    labels = np.broadcast_to(np.arange(ways, dtype=np.int32)[:, None], (ways, n))

    def part(sl, k):
        imgs = x[:, :, sl].reshape(num_tasks, ways * k, *x.shape[3:])
        return imgs, np.ascontiguousarray(np.broadcast_to(labels[:, sl].reshape(-1), (num_tasks, ways * k)))

    return Task(part(slice(0, shots), shots), part(slice(shots, n), queries))


def to_float(tasks: Task) -> Task:
    """uint8 episode images to float32 in [0, 1] (as :func:`~metajax.data.sample_episode`), labels kept."""
    (xs, ys), (xq, yq) = tasks
    return Task((jnp.asarray(xs).astype(jnp.float32) / 255.0, ys), (jnp.asarray(xq).astype(jnp.float32) / 255.0, yq))


def tiered_episode_sampler(
    data: RaggedClassImages, num_tasks: int, ways: int, shots: int, queries: int
) -> Callable[[jax.Array], Task]:
    """``sample(key) -> Task``, traceable: :func:`host_episodes` through ``jax.pure_callback``, float32 images.

    Inside a compiled training loop the host draws each batch from the memory map when the device asks for it;
    the same key gives the same episodes as :func:`host_episodes` called directly.
    """
    num_tasks = check_positive_int("num_tasks", num_tasks)
    check_episode_args(data.num_classes, int(data.counts.min()), ways, shots, queries)
    shape = data.images.shape[1:]

    def spec(k):
        return (
            jax.ShapeDtypeStruct((num_tasks, ways * k, *shape), jnp.uint8),
            jax.ShapeDtypeStruct((num_tasks, ways * k), jnp.int32),
        )

    draw = _on_host(
        lambda key: host_episodes(key, data, num_tasks, ways, shots, queries), Task(spec(shots), spec(queries))
    )
    return lambda key: to_float(draw(key))


def host_classification_images(key: np.ndarray, data: RaggedClassImages, batch_size: int) -> tuple[np.ndarray, ...]:
    """``batch_size`` labelled images drawn on the host, a pure function of ``key``: a class uniformly, then one of
    its images uniformly (with replacement), as :func:`metajax.pretrain.classification_batch` draws from a dense
    array. Returns uint8 ``(batch_size, H, W, C)`` and int32 class indices."""
    rng = _rng(key)
    y = rng.integers(0, data.num_classes, batch_size)
    flat = data.offsets[y] + np.floor(rng.random(batch_size) * data.counts[y]).astype(np.int64)
    return _gather(data, flat), y.astype(np.int32)


def tiered_classification_sampler(
    data: RaggedClassImages, batch_size: int
) -> Callable[[jax.Array], tuple[jax.Array, ...]]:
    """``draw(key) -> (x, y)``, traceable: :func:`host_classification_images` through ``jax.pure_callback``
    (uint8 images); pass it as ``images`` to :func:`metajax.pretrain.classification_batch`."""
    batch_size = check_positive_int("batch_size", batch_size)
    shape = data.images.shape[1:]
    spec = (jax.ShapeDtypeStruct((batch_size, *shape), jnp.uint8), jax.ShapeDtypeStruct((batch_size,), jnp.int32))

    return _on_host(lambda key: host_classification_images(key, data, batch_size), spec)
