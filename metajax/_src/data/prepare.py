"""Prepare TFDS ``omniglot`` 3.0.0 from local zips, with no network.

tensorflow-datasets' ``omniglot`` builder downloads four zips from GitHub and
checks them against the sizes and SHA-256 it registers. :func:`prepare_omniglot`
runs the same builder on zips you already have: it hands them over as TFDS's
"manually downloaded" files and, because re-packed copies (same PNG files,
different zip bytes) fail TFDS's checksum check, registers the local files'
own checksums for this one preparation, saying which files differ from the
originals. The output is what ``tfds.builder("omniglot").download_and_prepare()``
writes (``array_record`` by default, readable with ``tfds.data_source`` without
TensorFlow), and metajax then reads it back and checks the counts.

Writing TFDS files needs TensorFlow (``pip install "metajax[prepare]"``);
reading them does not. metajax can also train straight from the two main zips
(``load_omniglot`` falls back to them), so preparing is optional.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

ZIPS = (
    "images_background.zip",
    "images_evaluation.zip",
    "images_background_small1.zip",
    "images_background_small2.zip",
)
ORIGINALS_URL = "https://github.com/brendenlake/omniglot/tree/master/python"
EXPECTED = {"train": 19280, "test": 13180, "small1": 2720, "small2": 3120}
FILE_FORMATS = ("array_record", "tfrecord")


class PrepareError(ValueError):
    """The preparation cannot start (missing zips or TensorFlow, bad output directory)."""


def check_sources(zips_dir: str | os.PathLike) -> Path:
    """Return the directory holding all four Omniglot zips, or raise naming what is missing."""
    root = Path(zips_dir).expanduser()
    if not root.is_dir():
        raise PrepareError(f"--zips: {root} is not a directory; it must hold the four Omniglot zips {list(ZIPS)}.")
    missing = [z for z in ZIPS if not (root / z).is_file()]
    if missing:
        raise PrepareError(
            f"--zips: {root} lacks {missing}. TFDS's omniglot builder needs all four of {list(ZIPS)} "
            f"(from {ORIGINALS_URL}; copies with the same PNG files work too)."
        )
    return root


def _import_tfds_builder():
    try:
        import tensorflow  # noqa: F401  (TFDS writes examples with TensorFlow)
    except ImportError as err:
        raise PrepareError(
            "preparing TFDS files needs TensorFlow, which is not installed: pip install 'metajax[prepare]' "
            "(or `pip install tensorflow-cpu` on x86-64 Linux). Reading the prepared files does not need it, and "
            "metajax can train straight from images_background.zip and images_evaluation.zip without preparing."
        ) from err
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.image_classification import omniglot as tfds_omniglot

    return tfds, checksums, tfds_omniglot


def prepare_omniglot(
    zips_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    file_format: str = "array_record",
    log: Any = print,
) -> dict[str, Any]:
    """Write TFDS ``omniglot`` 3.0.0 under ``data_dir`` from the zips in ``zips_dir``.

    Args:
      zips_dir: directory with the four original zips (or copies holding the same PNG files).
      data_dir: TFDS data directory to write (``data_dir/omniglot/3.0.0``).
      file_format: ``"array_record"`` (random access; what metajax reads) or ``"tfrecord"``.
      log: where progress lines go.

    Returns:
      ``{"path", "counts", "checksums"}``: the prepared folder, the number of
      examples per split and, per zip, its SHA-256 and whether it equals
      the one TFDS registers for the original file.

    Raises:
      PrepareError: before any work, if a zip, TensorFlow or a writable
        ``data_dir`` is missing, or the format is unknown.
    """
    if file_format not in FILE_FORMATS:
        raise PrepareError(f"--format must be one of {FILE_FORMATS}, got {file_format!r}.")
    src = check_sources(zips_dir)
    out = Path(data_dir).expanduser()
    target = out / "omniglot" / "3.0.0"
    if (target / "dataset_info.json").is_file():
        raise PrepareError(
            f"--data-dir: {target} already holds a prepared copy; check it with `metajax data check --data-dir "
            f"{out}` or remove that folder to prepare again."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out)
        probe.close()
    except OSError as err:
        raise PrepareError(f"--data-dir: cannot write to {out} ({err}).") from err
    tfds, checksums, tfds_omniglot = _import_tfds_builder()

    registered = tfds_omniglot.Omniglot.url_infos
    local, report = {}, {}
    for url, info in registered.items():
        path = src / info.filename
        got = dataclasses.replace(checksums.compute_url_info(path), filename=info.filename)
        local[url] = got
        same = got == info
        report[info.filename] = {"sha256": got.checksum, "original": same}
        log(
            f"{info.filename}: {int(got.size)} bytes, sha256 {got.checksum[:12]}… "
            + ("(the original file)" if same else f"(not the original: TFDS registers {info.checksum[:12]}…)")
        )
    if not all(r["original"] for r in report.values()):
        log(
            "some zips are not byte-identical to the originals; preparing from their own checksums (the builder "
            "reads the PNG files inside, so identical PNGs give identical examples)."
        )
    # The same builder class with the local checksums registered, for this preparation only.
    with tfds.core.registered.skip_registration():
        local_builder = type(
            "Omniglot", (tfds_omniglot.Omniglot,), {"url_infos": local, "__module__": tfds_omniglot.__name__}
        )
    with tempfile.TemporaryDirectory(prefix="metajax-omniglot-") as scratch:
        builder = local_builder(data_dir=str(out), file_format=file_format)
        builder.download_and_prepare(
            download_dir=scratch, download_config=tfds.download.DownloadConfig(manual_dir=str(src))
        )
    counts = {name: int(split.num_examples) for name, split in builder.info.splits.items()}
    wrong = {k: (counts.get(k), v) for k, v in EXPECTED.items() if counts.get(k) != v}
    if wrong:
        raise PrepareError(
            f"prepared {target}, but split sizes (got, expected) differ: {wrong}; are the zips complete?"
        )
    log(f"prepared {target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return {"path": target, "counts": counts, "checksums": report}
