"""Supervised pre-training (metajax.pretrain, ``metajax pretrain``) and meta-training from it (``train --init``)."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_omniglot import DATA_DIR, needs_data

from metajax import pretrain as pt
from metajax._src.app import cli
from metajax.models import conv4


def test_classification_batch_draws_labelled_images_from_every_class():
    images = jnp.asarray(np.arange(6 * 4 * 8 * 8, dtype=np.uint32).reshape(6, 4, 8, 8) % 251, jnp.uint8)
    x, y = pt.classification_batch(jax.random.PRNGKey(0), images, 512)
    assert x.shape == (512, 8, 8, 1) and x.dtype == jnp.float32 and y.dtype == jnp.int32
    assert set(np.asarray(y).tolist()) == set(range(6))  # 512 draws over 6 classes reach every one
    # each image is one of its class's examples, scaled to [0, 1]
    for xi, yi in zip(np.asarray(x[:20]), np.asarray(y[:20]), strict=True):
        assert any(np.allclose(xi[..., 0], np.asarray(images[yi, n]) / 255.0, rtol=0, atol=1e-6) for n in range(4))


def test_flip_crop_keeps_the_shape_and_moves_pixels_within_an_eighth():
    img = np.zeros((1, 1, 16, 16, 3), np.uint8)
    img[0, 0, 7, 3] = 255  # one bright pixel
    x, _ = pt.classification_batch(jax.random.PRNGKey(1), jnp.asarray(img), 400, "flip_crop")
    assert x.shape == (400, 16, 16, 3)
    seen = set()
    for xi in np.asarray(x):
        where = np.argwhere(xi[..., 0] == 1.0)
        if len(where):  # a crop may push the pixel out of the frame
            r, c = where[0]
            seen.add(int(c) in range(1, 6))  # unflipped column 3 +- 2
            assert abs(r - 7) <= 2 and (abs(c - 3) <= 2 or abs(c - 12) <= 2), (r, c)
    assert seen == {True, False}  # both flipped and unflipped images were drawn
    same = pt.classification_batch(jax.random.PRNGKey(1), jnp.asarray(img), 400, "flip_crop")[0]
    np.testing.assert_array_equal(x, same)  # a function of the key
    with pytest.raises(ValueError, match="augment must be one of"):
        pt.classification_batch(jax.random.PRNGKey(1), jnp.asarray(img), 4, "mixup")


def test_backbone_transfer_keeps_the_fresh_head_and_checks_shapes():
    small, wide = conv4(5, 4, 28, 1), conv4(5, 6, 28, 1)
    pre = conv4(40, 4, 28, 1).init(jax.random.PRNGKey(0))  # pre-training: 40 classes
    fresh = small.init(jax.random.PRNGKey(1))
    backbone = pt.backbone_of(pre)
    assert "head" not in backbone["params"] and set(backbone["params"]) == set(pre["params"]) - {"head"}
    merged = pt.with_backbone(fresh, backbone)
    for name in backbone["params"]:
        for a, b in zip(jax.tree.leaves(merged["params"][name]), jax.tree.leaves(pre["params"][name]), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(merged["params"]["head"]), jax.tree.leaves(fresh["params"]["head"]), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"\['Conv_0'\]\['bias'\] has shape \(4,\), this model's \(6,\)"):
        pt.with_backbone(wide.init(jax.random.PRNGKey(1)), backbone)
    del backbone["params"]["Conv_3"]
    with pytest.raises(ValueError, match="pre-train with the same model settings"):
        pt.with_backbone(fresh, backbone)
    with pytest.raises(ValueError, match="no module 'classifier'"):
        pt.backbone_of(pre, "classifier")


def _pretrain(run_dir, *sets):
    argv = ["pretrain", "--config", "omniglot_5w1s_maml", "--smoke", "--data-dir", DATA_DIR, "--no-progress"]
    sets = ["pretrain.steps=12", "pretrain.eval_every=6", "pretrain.checkpoint_every=6", *sets]
    return cli.main([*argv, "--run-dir", str(run_dir), *(a for s in sets for a in ("--set", s))])


@needs_data
def test_pretrain_resumes_exactly_and_train_starts_from_its_backbone(tmp_path, capsys):
    from metajax._src.app import experiment
    from metajax._src.app.experiment_base import initial_run_params
    from metajax._src.app.rundir import load_params

    a = tmp_path / "a"
    assert _pretrain(a) == 0
    err = capsys.readouterr().err
    assert "4400 classes" in err and f"--init {a}" in err, err
    summary = json.loads((a / "summary.json").read_text())
    assert summary["kind"] == "pretrain" and summary["steps"] == 12 and summary["backbone_step"] in (6, 12)
    rows = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 6, 11, 12] and "val_accuracy" in rows[1]
    assert rows[-1]["loss"] < rows[0]["loss"]  # 12 steps of Adam on 4,400 classes: the loss falls
    assert (a / "learning.png").is_file()

    # a run stopped after its step-6 checkpoint, resumed: the same bytes as the uninterrupted one
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "12")
    for name in ("summary.json", "pretrained.msgpack", "backbone.msgpack", "best.msgpack"):
        (b / name).unlink()
        (b / f"{name}.sha256").unlink(missing_ok=True)
    lines = (b / "metrics.jsonl").read_text().splitlines()
    (b / "metrics.jsonl").write_text("\n".join([*lines, '{"step": 99, "loss": 1']) + "\n")  # and a torn line
    assert _pretrain(b) == 0
    assert "resuming from the checkpoint at step 6" in capsys.readouterr().err
    for name in ("pretrained.msgpack", "backbone.msgpack"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

    def values(run):  # the metrics without their wall-clock fields
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time_s", "it_per_s")} for r in rows]

    assert values(a) == values(b)

    # meta-training starts from the backbone, with the head of a run from scratch
    cfg = cli.load_config("omniglot_5w1s_maml", smoke=True)
    cfg.data.data_dir = DATA_DIR
    exp = experiment.build(cfg)
    key = jax.random.split(jax.random.PRNGKey(cfg.seed))[0]
    scratch = initial_run_params(exp, key)
    started = initial_run_params(exp, key, str(a))
    backbone = load_params(a / "backbone.msgpack", pt.backbone_of(scratch))
    for name, module in started["params"].items():
        want = scratch["params"]["head"] if name == "head" else backbone["params"][name]
        for x, y in zip(jax.tree.leaves(module), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(x, y)
    # MAML++'s per-step model takes the same backbone at every inner step, with fresh running statistics
    pp = cli.load_config("omniglot_5w1s_mamlpp", smoke=True)
    pp.data.data_dir = DATA_DIR
    exp_pp = experiment.build(pp)
    fresh = initial_run_params(exp_pp, key)
    from_backbone = initial_run_params(exp_pp, key, str(a))
    steps = pp.inner.steps
    for i in range(4):
        for leaf in ("scale", "bias"):
            got = exp_pp.learner.model_params(from_backbone.meta_params)["params"][f"Norm_{i}"][leaf]
            want = backbone["params"][f"RefBatchNorm_{i}"][leaf]
            np.testing.assert_array_equal(got, np.broadcast_to(want, (steps, *want.shape)))
    for x, y in zip(jax.tree.leaves(from_backbone.model_state), jax.tree.leaves(fresh.model_state), strict=True):
        np.testing.assert_array_equal(x, y)

    run = tmp_path / "run"
    argv = ["train", "--config", "omniglot_5w1s_maml", "--smoke", "--data-dir", DATA_DIR, "--no-progress"]
    assert cli.main([*argv, "--init", str(a), "--run-dir", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["init"] == str(a.resolve())

    # bad input, each refused before anything compiles
    capsys.readouterr()
    assert cli.main([*argv, "--init", str(run), "--run-dir", str(tmp_path / "x")]) == 2
    assert "is not a finished pre-training run" in capsys.readouterr().err
    assert cli.main([*argv, "--init", str(a), "--set", "model.filters=6", "--run-dir", str(tmp_path / "y")]) == 2
    assert "has shape" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "sinusoid_maml"], "has no classes to pre-train on"),
        (["--config", "omniglot_5w1s_maml", "--set", "pretrain.opt=rmsprop"], "pretrain.opt must be one of"),
        (["--config", "omniglot_5w1s_maml", "--set", "pretrain.lr=-1.0"], "pretrain.lr must be a number > 0"),
        (["--config", "omniglot_5w1s_maml", "--set", "pretrain.steps=0"], "pretrain.steps must be an integer >= 1"),
        (["--config", "omniglot_5w1s_maml", "--set", "pretrain.augment=mixup"], "pretrain.augment must be one of"),
        (["--config", "omniglot_5w1s_maml", "--set", "pretrain.nope=1"], "unknown config key 'pretrain.nope'"),
    ],
)
def test_pretrain_refuses_bad_settings_before_loading_data(argv, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        cli.main(["pretrain", *argv, "--smoke", "--data-dir", str(tmp_path / "no-data"), "--run-dir", str(run_dir)])
        == 2
    )
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_a_backbone_pre_trained_on_another_split_is_refused(tmp_path):
    from metajax._src.app.rundir import check_backbone_split

    config = cli.load_config("omniglot_5w1s_maml", smoke=True)
    run = tmp_path / "pre"
    run.mkdir()
    (run / "config.json").write_text(config.to_json())
    check_backbone_split(run, config)  # the same split: accepted
    other = cli.apply_overrides(config.copy_and_resolve_references(), ["data.split_seed=7"])
    (run / "config.json").write_text(other.to_json())
    with pytest.raises(
        ValueError, match=r"pre-trained with data.split_seed=7, this run has data.split_seed=0: .*inflate"
    ):
        check_backbone_split(run, config)
    (run / "config.json").write_text(cli.load_config("miniimagenet_5w1s_maml", smoke=True).to_json())
    with pytest.raises(ValueError, match="pre-trained with task='miniimagenet', this run has task='omniglot'"):
        check_backbone_split(run, config)
