"""`metajax data prepare omniglot`: offline TFDS preparation from local zips."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from metajax._src.data import prepare
from metajax.cli import main

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "omniglot"


def _fake_zips(tmp_path, names=prepare.ZIPS):
    for n in names:
        (tmp_path / n).write_bytes(b"PK")
    return tmp_path


def test_missing_zips_are_named_before_anything_runs(tmp_path, capsys):
    _fake_zips(tmp_path, prepare.ZIPS[:2])
    with pytest.raises(prepare.PrepareError, match=r"lacks \['images_background_small1.zip', 'images_background_smal"):
        prepare.prepare_omniglot(tmp_path, tmp_path / "out")
    assert main(["data", "prepare", "omniglot", "--zips", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_without_tensorflow_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(prepare.PrepareError, match=r"needs TensorFlow.*pip install 'metajax\[prepare\]'"):
        prepare.prepare_omniglot(_fake_zips(tmp_path), tmp_path / "out")


def test_an_existing_copy_is_not_overwritten(tmp_path):
    target = tmp_path / "out" / "omniglot" / "3.0.0"
    target.mkdir(parents=True)
    (target / "dataset_info.json").write_text("{}")
    with pytest.raises(prepare.PrepareError, match="already holds a prepared copy"):
        prepare.prepare_omniglot(_fake_zips(tmp_path), tmp_path / "out")
    with pytest.raises(prepare.PrepareError, match="--format must be one of"):
        prepare.prepare_omniglot(tmp_path, tmp_path / "other", file_format="parquet")


@pytest.mark.slow
def test_prepare_from_the_shared_zips_matches_the_shared_tfds_copy(tmp_path):
    pytest.importorskip("tensorflow")
    if not all((SHARED / z).is_file() for z in prepare.ZIPS):
        (pytest.fail if os.environ.get("METAJAX_REQUIRE_DATA") == "1" else pytest.skip)(
            f"Omniglot zips not found at {SHARED}"
        )
    from metajax._src.data import omniglot

    res = prepare.prepare_omniglot(SHARED, tmp_path, log=lambda m: None)
    assert res["counts"] == prepare.EXPECTED
    # the two re-packed zips differ from the registered originals, the two small ones are the originals
    assert {k: v["original"] for k, v in res["checksums"].items()} == {
        "images_background.zip": False,
        "images_evaluation.zip": False,
        "images_background_small1.zip": True,
        "images_background_small2.zip": True,
    }
    ours, shared = omniglot.load_characters(tmp_path), omniglot.load_characters(SHARED / "tfds")
    for split in ("background", "evaluation"):
        for field in ours[split]._fields:
            np.testing.assert_array_equal(getattr(ours[split], field), getattr(shared[split], field))
