"""tiered-ImageNet without the real data: synthetic file trees in both layouts, the memory-mapped cache, host-side
episodes (inside jit too), and a smoke run of a config end to end with an exact resume."""

import io
import json
import os
import pickle
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from metajax._src.app import cli
from metajax._src.app.configs import available_configs
from metajax._src.data.tieredimagenet import host_episodes, load_tieredimagenet, tiered_episode_sampler
from metajax.data import DataError, DataNotFoundError

# per split: images per class (ragged); every image is one flat colour (r, g) = its index, b = its class
SPLITS = {"train": [7, 9, 8, 7, 10, 8], "val": [7, 8, 7, 7, 9], "test": [8, 7, 7, 9, 7]}


def _colour(i: int, c: int) -> tuple[int, int, int]:
    return i % 256, i // 256, c


def _folder_tree(root, splits=SPLITS):
    index = 0
    for s, (split, counts) in enumerate(splits.items()):
        for c, n in enumerate(counts):
            d = root / split / f"n{s}{c:07d}"
            d.mkdir(parents=True)
            for j in range(n):
                Image.new("RGB", (12, 10), _colour(index, 10 * s + c)).save(d / f"{j}.png")
                index += 1
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _folder_tree(tmp_path_factory.mktemp("tiered"))


def test_folders_convert_once_to_a_memory_mapped_cache(tree):
    parts = load_tieredimagenet(tree)
    for s, (split, counts) in enumerate(SPLITS.items()):
        p = parts[split]
        assert p.num_classes == len(counts) and p.counts.tolist() == counts
        assert p.images.shape == (sum(counts), 84, 84, 3) and p.images.dtype == np.uint8
        assert isinstance(p.images, np.memmap)
        # class-major: every image of class c carries b = its class id
        for c in range(p.num_classes):
            assert set(np.unique(p.images[p.offsets[c] : p.offsets[c + 1], 0, 0, 2]).tolist()) == {10 * s + c}
        assert (p.category == -1).all()
    assert (tree / "metajax_cache" / "train.images.npy").is_file()
    again = load_tieredimagenet(tree)  # from the cache: the same arrays
    assert np.array_equal(np.asarray(again["val"].images), np.asarray(parts["val"].images))


def _published(root, allow_general=True):
    rng = np.random.default_rng(0)
    for s, (split, counts) in enumerate(SPLITS.items()):
        labels = np.repeat(np.arange(len(counts)), counts)
        perm = rng.permutation(len(labels))  # the files are not class-major
        images = np.zeros((len(labels), 84, 84, 3), np.uint8)
        images[..., 0] = perm[:, None, None] % 256
        images[..., 2] = (10 * s + labels[perm])[:, None, None]
        if split == "test":  # the original form: a pickled list of PNG-encoded images
            encoded = []
            for im in images:
                buf = io.BytesIO()
                Image.fromarray(im).save(buf, format="PNG")
                encoded.append(np.frombuffer(buf.getvalue(), np.uint8))
            with open(root / f"{split}_images_png.pkl", "wb") as f:
                pickle.dump(encoded, f, protocol=2)
        else:
            np.savez(root / f"{split}_images.npz", images=images)
        d = {
            "label_specific": labels[perm],
            "label_general": (labels[perm] // 2 + 10 * s) if allow_general else None,
            "label_specific_str": [f"n{s}{c:07d}" for c in range(len(counts))],
        }
        if not allow_general:
            del d["label_general"]
        with open(root / f"{split}_labels.pkl", "wb") as f:
            pickle.dump(d, f, protocol=(2, 4, 5)[s])  # the published files are protocol 2 (Python 2 era)
    return root


def test_published_files_need_allow_pickle_and_load_only_arrays(tmp_path):
    root = _published(tmp_path)
    with pytest.raises(ValueError, match=r"train_labels.pkl is a pickle file.*allow_pickle=True"):
        load_tieredimagenet(root)
    parts = load_tieredimagenet(root, allow_pickle=True)
    for s, (split, counts) in enumerate(SPLITS.items()):
        p = parts[split]
        assert p.counts.tolist() == counts
        assert [int(p.images[p.offsets[c], 0, 0, 2]) for c in range(p.num_classes)] == [
            10 * s + c for c in range(len(counts))
        ]
        assert p.category.tolist() == [c // 2 + 10 * s for c in range(len(counts))]
        assert p.names[0] == f"n{s}0000000"
    # a pickle that would run code is refused, naming the global
    evil = tmp_path / "evil"
    evil.mkdir()
    _published(evil)

    class Boom:
        def __reduce__(self):
            return (os.system, ("true",))

    with open(evil / "val_labels.pkl", "wb") as f:
        pickle.dump({"label_specific": Boom()}, f)
    with pytest.raises(DataError, match=r"refusing to load posix.system|refusing to load os.system"):
        load_tieredimagenet(evil, allow_pickle=True)


def test_a_cache_converted_from_other_files_is_refused_and_a_failed_conversion_leaves_nothing(tmp_path):
    root = _folder_tree(tmp_path / "folders")
    load_tieredimagenet(root)
    cache = root / "metajax_cache"
    # a class folder deleted and two added after the conversion: the cache would return the old classes
    for d in sorted((root / "train").iterdir())[:1]:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    for name in ("n9000001", "n9000002"):
        (root / "train" / name).mkdir()
        Image.new("RGB", (8, 8)).save(root / "train" / name / "0.png")
    with pytest.raises(
        DataError,
        match=r"train: the cache in .* was converted from other files: class folders since "
        r"the conversion: added 2 \(n9000001, n9000002\); removed 1 \(n00000000\)\. Delete",
    ):
        load_tieredimagenet(root)
    Image.new("RGB", (8, 8)).save(root / "val" / "n10000000" / "extra.png")  # one more image in a class
    shutil.rmtree(cache)
    load_tieredimagenet(root)  # converted again: fresh
    Image.new("RGB", (8, 8)).save(root / "val" / "n10000000" / "extra2.png")
    with pytest.raises(DataError, match=r"val: .*changed image count 1 \(n10000000\)"):
        load_tieredimagenet(root)
    # the published layout: its files' sizes and modification times
    (tmp_path / "published").mkdir()
    pub = _published(tmp_path / "published")
    load_tieredimagenet(pub, allow_pickle=True)
    np.savez(pub / "val_images.npz", images=np.zeros((38, 84, 84, 3), np.uint8))
    with pytest.raises(DataError, match=r"val: .*the files val_\* changed since the conversion"):
        load_tieredimagenet(pub, allow_pickle=True)
    # a conversion that fails half-way leaves no partial image file
    bad = _folder_tree(tmp_path / "bad")
    (bad / "val" / "n10000000" / "0.png").write_bytes(b"not an image")
    with pytest.raises(DataError):
        load_tieredimagenet(bad)
    assert not list((bad / "metajax_cache").glob("*.partial.npy"))


def test_mutated_label_pickles_load_or_raise_data_error_and_run_no_code(tmp_path):
    """Random byte flips, insertions and truncations of a protocol-2 labels pickle: every one loads arrays or raises
    DataError (never MemoryError, OverflowError, LookupError, ...); protocol 2's _codecs.encode takes latin1 only."""
    from metajax._src.data.tieredimagenet import _unpickle

    d = {"label_specific": np.arange(12) % 3, "label_specific_str": [b"n01", b"n02", b"n03"]}
    good = pickle.dumps(d, protocol=2)
    rng = np.random.default_rng(0)
    path = tmp_path / "labels.pkl"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(data)))
            kind = rng.integers(3)
            if kind == 0:
                data[i] = int(rng.integers(256))
            elif kind == 1:
                data.insert(i, int(rng.integers(256)))
            else:
                del data[i:]
                break
        path.write_bytes(bytes(data))
        try:
            _unpickle(path)
            outcomes["loaded"] += 1
        except DataError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100, outcomes
    codec = b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00abq\x01X\x06\x00\x00\x00rot_13q\x02\x86q\x03Rq\x04."
    path.write_bytes(codec)
    with pytest.raises(DataError, match=r"refusing _codecs.encode\(str, 'rot_13'\)"):
        _unpickle(path)


def test_splits_sharing_a_class_or_category_are_refused(tmp_path):
    root = _folder_tree(tmp_path / "a")
    (root / "test" / "n00000000").mkdir()  # a training class name in the test split
    Image.new("RGB", (8, 8)).save(root / "test" / "n00000000" / "0.png")
    with pytest.raises(DataError, match=r"splits train and test share classes \['n00000000'\]"):
        load_tieredimagenet(root)
    with pytest.raises(DataNotFoundError, match="METAJAX_TIEREDIMAGENET_DIR"):
        load_tieredimagenet(tmp_path / "nothing")


def test_host_episodes_are_disjoint_labelled_and_the_same_inside_jit(tree):
    data = load_tieredimagenet(tree)["train"]
    key = jax.random.PRNGKey(3)
    tasks = host_episodes(np.asarray(key), data, 8, ways=5, shots=1, queries=3)
    (xs, ys), (xq, yq) = tasks
    assert xs.shape == (8, 5, 84, 84, 3) and xq.shape == (8, 15, 84, 84, 3) and xs.dtype == np.uint8
    for t in range(8):
        classes = [int(xs[t, w, 0, 0, 2]) for w in range(5)]
        assert len(set(classes)) == 5  # distinct classes
        # each query image belongs to the class its label names, and none is a support image
        assert [int(xq[t, i, 0, 0, 2]) for i in range(15)] == [classes[y] for y in yq[t]]
        ids = lambda x: {(int(a), int(b)) for a, b in x[:, 0, 0, :2]}  # noqa: E731
        assert not ids(xs[t]) & ids(xq[t]) and len(ids(xq[t])) == 15
    assert ys.tolist() == [list(range(5))] * 8
    again = host_episodes(np.asarray(key), data, 8, ways=5, shots=1, queries=3)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(tasks), jax.tree.leaves(again), strict=True))
    sample = jax.jit(tiered_episode_sampler(data, 8, 5, 1, 3))
    inside = sample(key)
    assert np.array_equal(np.rint(np.asarray(inside.support[0]) * 255).astype(np.uint8), xs)  # [0, 1] floats
    assert np.array_equal(np.asarray(inside.query[1]), yq)
    with pytest.raises(ValueError, match=r"shots \+ queries = 1 \+ 7 = 8 exceeds the 7 examples per class"):
        tiered_episode_sampler(data, 2, 5, 1, 7)


TIERED_CONFIGS = [n for n in available_configs() if n.startswith("tiered_")]


def smoke_train(tree, run, name="tiered_5w1s_maml", steps=2, every=0, extra=()):
    args = ["train", "--config", name, "--smoke", "--data-dir", str(tree), "--run-dir", str(run), "--no-progress"]
    args += list(extra)
    sets = [f"train.num_steps={steps}", f"train.checkpoint_every={every}", f"train.eval_every={every}"]
    return cli.main(args + [a for s in [*sets, "runtime.cpu_threads=1"] for a in ("--set", s)])


def test_every_config_builds_and_the_data_check_reads_the_tree(tree, capsys):
    from metajax._src.app.experiment import build

    assert len(TIERED_CONFIGS) == 10
    for name in TIERED_CONFIGS:
        config = cli.load_config(name, smoke=True)
        config.data.data_dir = str(tree)
        assert build(config).learner.name  # data read, model and learner built; nothing compiled
    assert cli.main(["data", "check", "tiered_imagenet", "--data-dir", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "tiered_imagenet train: 6 classes, 49 images (7 to 10 per class), unknown categories" in out
    # training: every config and the exact resume under -m slow below (host-callback programs are not kept in the
    # compilation cache: ~1 minute each)


def test_pretraining_reads_the_host_split_and_train_starts_from_it(tree, tmp_path):
    from metajax.data import tiered_classification_sampler

    data = load_tieredimagenet(tree)["train"]
    x, y = jax.jit(tiered_classification_sampler(data, 64))(jax.random.PRNGKey(0))
    assert x.shape == (64, 84, 84, 3) and x.dtype == np.uint8 and set(np.asarray(y).tolist()) <= set(range(6))
    # every image is its class's: b carries the class id
    assert (np.asarray(x)[:, 0, 0, 2] == np.asarray(y)).all()
    pre = tmp_path / "pre"
    args = ["--config", "tiered_5w1s_maml", "--smoke", "--data-dir", str(tree), "--no-progress"]
    sets = ["pretrain.steps=4", "pretrain.eval_every=2", "runtime.cpu_threads=1"]
    assert cli.main(["pretrain", *args, "--run-dir", str(pre)] + [a for s in sets for a in ("--set", s)]) == 0
    summary = json.loads((pre / "summary.json").read_text())
    assert summary["classes"] == 6 and summary["steps"] == 4
    assert smoke_train(tree, tmp_path / "run", extra=["--init", str(pre)]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["init"] == str(pre.resolve())


@pytest.mark.slow  # builds each 5-shot config and traces its training step (no compile): seconds each
@pytest.mark.parametrize("name", [n for n in TIERED_CONFIGS if "_5w5s_" in n])
def test_every_5_shot_config_traces_its_training_step(name, tree):
    """The 5-shot configs differ from the 1-shot ones (each trained below) only in shots and queries."""
    from conftest import trace_training_step

    config = cli.load_config(name, smoke=True)
    config.data.data_dir = str(tree)
    assert "query_loss" in trace_training_step(config)
    assert name.replace("_5w5s_", "_5w1s_") in TIERED_CONFIGS


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TIERED_CONFIGS if "_5w1s_" in n])
def test_every_1_shot_config_trains_on_synthetic_data(name, tree, tmp_path):
    assert smoke_train(tree, tmp_path / "run", name) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2
    if name == "tiered_5w1s_maml":
        assert "transductive" in json.dumps(summary["results"])


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_same_bits(tree, tmp_path):
    assert smoke_train(tree, tmp_path / "straight", steps=10, every=5) == 0
    assert smoke_train(tree, tmp_path / "resumed", steps=5, every=5) == 0
    assert smoke_train(tree, tmp_path / "resumed", steps=10, every=5) == 0
    a = (tmp_path / "straight" / "meta_params.msgpack").read_bytes()
    assert a == (tmp_path / "resumed" / "meta_params.msgpack").read_bytes()
