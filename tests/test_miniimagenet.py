"""Mini-ImageNet from user files: layouts, pickle opt-in, errors, a smoke run (synthetic trees)."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from metajax._src.app import cli
from metajax._src.data.miniimagenet import DataNotFoundError, load_miniimagenet

CLASSES, PER_CLASS = 5, 4


def color(split, c, i):
    return (40 * c + 3 * i) % 256, {"train": 10, "val": 100, "test": 200}[split], 7 * i


def make_csv_tree(root, size=90):
    (root / "images").mkdir(parents=True)
    for split in ("train", "val", "test"):
        rows = ["filename,label"]
        for c in range(CLASSES):
            for i in range(PER_CLASS):
                name = f"{split}{c:02d}{i:03d}.png"
                Image.new("RGB", (size, size), color(split, c, i)).save(root / "images" / name)
                rows.append(f"{name},n{split}{c:04d}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def make_folder_tree(root):
    for split in ("train", "val", "test"):
        for c in range(CLASSES):
            d = root / split / f"n{c:04d}"
            d.mkdir(parents=True)
            for i in range(PER_CLASS):
                Image.new("RGB", (84, 84), color(split, c, i)).save(d / f"{i}.png")
    return root


def check(parts):
    for split in ("train", "val", "test"):
        imgs = parts[split].images
        assert imgs.shape == (CLASSES, PER_CLASS, 84, 84, 3) and imgs.dtype == np.uint8
        np.testing.assert_array_equal(imgs[2, 1, 0, 0], color(split, 2, 1))


def test_csv_layout_and_cache(tmp_path):
    root = make_csv_tree(tmp_path / "mini")
    check(load_miniimagenet(root))
    assert (root / "metajax_cache" / "train.npz").is_file()
    (root / "train.csv").unlink()  # the cache is read from now on
    check(load_miniimagenet(root))


def test_folder_layout(tmp_path):
    check(load_miniimagenet(make_folder_tree(tmp_path / "mini")))


def test_pickle_needs_explicit_opt_in(tmp_path):
    root = tmp_path / "mini"
    root.mkdir()
    for split in ("train", "val", "test"):
        data = np.stack(
            [np.full((84, 84, 3), color(split, c, i), np.uint8) for c in range(CLASSES) for i in range(PER_CLASS)]
        )
        class_dict = {f"n{c:04d}": list(range(c * PER_CLASS, (c + 1) * PER_CLASS)) for c in range(CLASSES)}
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": data, "class_dict": class_dict}, f)
    with pytest.raises(ValueError, match="pickle file, which can run arbitrary code.*allow_pickle=True"):
        load_miniimagenet(root)
    assert not (root / "metajax_cache").exists()
    check(load_miniimagenet(root, allow_pickle=True))
    check(load_miniimagenet(root))  # converted once: later runs never unpickle


def test_missing_data_message(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match="metajax cannot download it.*train.csv, val.csv, test.csv"):
        load_miniimagenet(tmp_path / "absent")
    monkeypatch.delenv("METAJAX_MINIIMAGENET_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match="METAJAX_MINIIMAGENET_DIR"):
        load_miniimagenet(None)


def test_smoke_training_run_and_its_best_parameters_survive_the_loss_of_best_msgpack(tmp_path, capsys):
    root = make_csv_tree(tmp_path / "mini")
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--config",
        "miniimagenet_5w1s_maml",
        "--smoke",
        "--data-dir",
        str(root),
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--set",
        "train.num_steps=4",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.val_tasks=2",
        "--set",
        "eval.num_tasks=3",
        "--set",
        "inner.steps=1",
        "--set",
        "eval.steps=1",
    ]
    assert cli.main(args) == 0
    assert (run_dir / "eval_best.md").read_text().startswith("miniimagenet (5 test classes), 5-way 1-shot")
    best = (run_dir / "best.msgpack").read_bytes()
    summary = json.loads((run_dir / "summary.json").read_text())
    step = summary["best_step"]
    # the checkpoints keep the best parameters: losing best.msgpack loses nothing
    (run_dir / "best.msgpack").unlink()
    capsys.readouterr()
    eval_args = ["eval", str(run_dir), "--data-dir", str(root), "--no-progress", "--set", "eval.num_tasks=3"]
    assert cli.main(eval_args) == 0
    err = capsys.readouterr().err
    assert f"Using the best parameters (step {step}) kept in the checkpoint at step 4" in err
    assert not (run_dir / "best.msgpack").exists()  # eval reads, it does not repair (it holds no lock)
    # a damaged best.msgpack: the next `metajax train` on the run (it holds the lock) sets it aside and rewrites it
    (run_dir / "best.msgpack").write_bytes(best[:-7] + bytes(7))
    final = (run_dir / "meta_params.msgpack").read_bytes()
    (run_dir / "meta_params.msgpack").unlink()  # and a lost meta_params.msgpack comes back from the final checkpoint
    assert cli.main(args) == 0
    assert (run_dir / "meta_params.msgpack").read_bytes() == final
    err = capsys.readouterr().err
    assert "best.msgpack' is damaged" in err and "It was rewritten with the best parameters" in err
    assert (run_dir / "best.msgpack").read_bytes() == best
    assert (run_dir / "best.msgpack.damaged").read_bytes() == best[:-7] + bytes(7)
