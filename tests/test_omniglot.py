"""Omniglot through TFDS (the shared offline copy) and on-device episodes."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import session_shared

from metajax._src.data import omniglot
from metajax._src.data.episodes import sample_episode, sample_episodes

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "omniglot" / "tfds"
DATA_DIR = os.environ.get(omniglot.ENV_VAR) or (str(SHARED) if SHARED.is_dir() else None)
# METAJAX_REQUIRE_DATA=1 (set by .ci/run where the data is present) turns a missing-data skip into a failure
REQUIRE_DATA = os.environ.get("METAJAX_REQUIRE_DATA") == "1"
needs_data = pytest.mark.skipif(
    DATA_DIR is None and not REQUIRE_DATA,
    reason=f"Omniglot TFDS copy not found (${omniglot.ENV_VAR} unset, no ../shared/data/omniglot/tfds)",
)


@pytest.fixture(scope="module")
def characters():
    return session_shared("omniglot_characters", lambda: omniglot.load_characters(DATA_DIR))  # ~15 s: once


@needs_data
def test_tfds_counts_match(characters):
    bg, ev = characters["background"], characters["evaluation"]
    assert bg.images.shape == (964, 20, 28, 28) and ev.images.shape == (659, 20, 28, 28)
    assert bg.images.shape[0] * 20 == 19280 and ev.images.shape[0] * 20 == 13180
    assert bg.images.dtype == np.uint8
    assert list(bg.character) == list(range(964)) and list(ev.character) == list(range(964, 1623))
    assert len(np.unique(bg.alphabet)) == 30 and len(np.unique(ev.alphabet)) == 20
    # ink is high and sparse: background 0, strokes near 255
    assert 10 < bg.images.mean() < 60 and bg.images.max() == 255


ZIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "omniglot"


@pytest.mark.skipif(
    not (ZIPS / "images_evaluation.zip").is_file() and not REQUIRE_DATA, reason="original Omniglot zips not found"
)
@needs_data
def test_zips_and_tfds_give_identical_arrays(characters):
    from_zips = omniglot.load_characters(ZIPS, source="zips")
    for part in ("background", "evaluation"):
        for a, b in zip(characters[part], from_zips[part], strict=True):
            np.testing.assert_array_equal(a, b)


@needs_data
def test_standard_splits(characters):
    maml = omniglot.split_characters(characters, "maml")
    assert [len(maml[k].character) for k in ("train", "val", "test")] == [1100, 100, 423]
    assert len(np.unique(np.concatenate([maml[k].character for k in maml]))) == 1623
    again = omniglot.split_characters(characters, "maml")
    np.testing.assert_array_equal(maml["test"].character, again["test"].character)  # fixed seed
    vin = omniglot.split_characters(characters, "vinyals")
    assert [len(vin[k].character) for k in ("train", "val", "test")] == [864, 100, 659]
    assert set(vin["test"].alphabet).isdisjoint(set(vin["train"].alphabet))
    rot = omniglot.with_rotations(maml["test"])
    assert rot.images.shape == (1692, 20, 28, 28)
    np.testing.assert_array_equal(rot.images[1], np.rot90(maml["test"].images[0], 1, axes=(1, 2)))
    assert list(rot.rotation[:4]) == [0, 1, 2, 3]
    # rotated classes are distinct images (a square, symmetric character would not be)
    assert not np.array_equal(rot.images[0], rot.images[2])
    with pytest.raises(ValueError, match="split must be one of"):
        omniglot.split_characters(characters, "random")


def test_missing_data_directory_message(tmp_path):
    with pytest.raises(omniglot.DataNotFoundError, match=r"not found: .*nowhere does not exist.*images_background.zip"):
        omniglot.resolve_data_dir(tmp_path / "nowhere")
    assert "metajax data check omniglot --data-dir DIR" in omniglot.missing_data_message([tmp_path])


@pytest.mark.parametrize(
    "layout, phrase",
    [
        ({"omniglot/3.0.0/dataset_info.json": "{}"}, "is the TFDS dataset itself: give the directory two levels up"),
        ({"omniglot/2.0.0/x": ""}, "holds versions ['2.0.0'], not 3.0.0"),
        ({"images_background.zip": ""}, "has images_background.zip but not images_evaluation.zip"),
        ({"notes.txt": ""}, "holds neither omniglot/3.0.0/ nor the two zips"),
    ],
)
def test_each_wrong_data_directory_gets_its_own_message(tmp_path, layout, phrase):
    for rel, text in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    target = tmp_path / "omniglot" / "3.0.0" if "is the TFDS dataset" in phrase else tmp_path
    with pytest.raises(omniglot.DataNotFoundError) as err:
        omniglot.resolve_data_dir(target)
    assert phrase in str(err.value)


@pytest.mark.parametrize("content", ["truncated", "random", "other"])
def test_damaged_zips_name_the_file(tmp_path, content):
    import zipfile

    for name in ("background", "evaluation"):
        path = tmp_path / f"images_{name}.zip"
        with zipfile.ZipFile(path, "w") as z:
            if content == "other":
                z.writestr("something/else.png", b"")
            else:
                z.writestr(f"images_{name}/Alphabet/character01/0101_01.png", bytes(200))
        if content == "truncated":
            path.write_bytes(path.read_bytes()[:60])
        elif content == "random":
            path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(omniglot.DataError, match=r"images_background\.zip"):
        omniglot.load_characters(tmp_path, source="zips")


def fake_images(classes=12, examples=20):
    """Each image is filled with a code of (class, example), so episodes can be decoded."""
    code = np.arange(classes)[:, None] * examples + np.arange(examples)[None, :]
    return jnp.asarray(np.broadcast_to(code[:, :, None, None] % 251, (classes, examples, 4, 4)).astype(np.uint8)), code


def test_episode_structure():
    images, code = fake_images()
    task = jax.jit(lambda k: sample_episode(k, images, 5, 2, 3))(jax.random.PRNGKey(0))
    (xs, ys), (xq, yq) = task
    assert xs.shape == (10, 4, 4, 1) and xq.shape == (15, 4, 4, 1) and xs.dtype == jnp.float32
    np.testing.assert_array_equal(ys, np.repeat(np.arange(5), 2))
    np.testing.assert_array_equal(yq, np.repeat(np.arange(5), 3))
    sid = np.rint(np.asarray(xs[:, 0, 0, 0]) * 255).astype(int)
    qid = np.rint(np.asarray(xq[:, 0, 0, 0]) * 255).astype(int)
    assert set(sid).isdisjoint(qid)  # support and query never share an example
    cls_s = sid.reshape(5, 2) // 20
    cls_q = qid.reshape(5, 3) // 20
    assert (cls_s == cls_s[:, :1]).all() and (cls_q == cls_q[:, :1]).all()  # a label is one class
    np.testing.assert_array_equal(cls_s[:, 0], cls_q[:, 0])  # same class behind a label in support and query
    assert len(set(cls_s[:, 0])) == 5  # no class repeated within a task


def test_episodes_deterministic_and_varied():
    images, _ = fake_images()
    a = sample_episodes(jax.random.PRNGKey(0), images, 4, 5, 1, 15)
    b = sample_episodes(jax.random.PRNGKey(0), images, 4, 5, 1, 15)
    c = sample_episodes(jax.random.PRNGKey(1), images, 4, 5, 1, 15)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a.support[0], c.support[0])
    assert not np.array_equal(a.support[0][0], a.support[0][1])  # tasks in a batch differ


def test_episode_argument_errors():
    images, _ = fake_images(classes=4)
    with pytest.raises(ValueError, match="ways=5 exceeds the 4 classes"):
        sample_episodes(jax.random.PRNGKey(0), images, 2, 5, 1, 1)
    with pytest.raises(ValueError, match=r"shots \+ queries = 5 \+ 16 = 21 exceeds the 20 examples"):
        sample_episodes(jax.random.PRNGKey(0), images, 2, 3, 5, 16)


@pytest.mark.parametrize("damage", ["dataset_info", "array_record"])
def test_damaged_tfds_copy_names_the_directory(tmp_path, damage):
    import shutil

    src = Path(DATA_DIR or "/nonexistent") / "omniglot" / "3.0.0"
    if not src.is_dir():
        (pytest.fail if REQUIRE_DATA else pytest.skip)(f"no TFDS Omniglot copy at {src}")
    dst = tmp_path / "omniglot" / "3.0.0"
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    if damage == "dataset_info":
        (dst / "dataset_info.json").write_text("{ not json")
    else:
        train = dst / "omniglot-train.array_record-00000-of-00001"
        train.write_bytes(train.read_bytes()[: train.stat().st_size // 3])
    with pytest.raises(omniglot.DataError, match=r"omniglot/3\.0\.0 cannot be read"):
        omniglot.load_characters(tmp_path, source="tfds")
