"""Few-shot classification end to end on the shared Omniglot copy (tiny net, few steps)."""

import importlib
import json

import jax
import numpy as np
import pytest
from test_omniglot import DATA_DIR, needs_data

from metajax._src.app import cli
from metajax._src.app.configs import available_configs


def smoke_config(**overrides):
    cfg = cli.load_config("omniglot_5w1s_maml", smoke=True)
    cfg.data.data_dir = DATA_DIR
    cli.apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])
    return cfg


@needs_data
def test_tiny_omniglot_run_lowers_query_loss(tmp_path):
    from metajax._src.app import experiment, train
    from metajax.evaluation import accuracy_after_adaptation

    cfg = smoke_config(
        **{
            "train.num_steps": 60,
            "data.meta_batch_size": 4,
            "train.eval_every": 0,
            "outer.lr": 0.003,
            "train.steps_per_call": 20,
        }
    )
    exp = experiment.build(cfg)
    init = exp.learner.init(exp.model.init(jax.random.split(jax.random.PRNGKey(cfg.seed))[0]))
    trained, info = train.meta_train(exp, tmp_path, progress=False)
    assert info["steps"] == 60
    from metajax._src.data.episodes import sample_episodes

    tasks = sample_episodes(jax.random.PRNGKey(7), exp.data[0], 20, 5, 1, 5)  # training classes, fixed tasks
    qloss = exp.learner.query_loss
    before, _ = accuracy_after_adaptation(exp.learner, init, qloss, tasks, 1, 1)
    after, acc = accuracy_after_adaptation(exp.learner, trained, qloss, tasks, 1, 1)
    assert after.mean() < 0.9 * before.mean(), (before.mean(), after.mean())
    assert acc.mean() > 0.3  # chance is 0.2


@needs_data
def test_train_then_eval_commands(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--config",
                "omniglot_5w1s_maml",
                "--smoke",
                "--data-dir",
                DATA_DIR,
                "--run-dir",
                str(run_dir),
                "--no-progress",
                "--set",
                "runtime.eval_tasks_per_call=6",  # 10 validation / test tasks: 6 + 4 (padded)
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "meta-train validation 6/10 tasks" in err and "evaluate final (support BN) 10/10 " in err, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_step"] in (10, 20)
    assert set(summary["results"]) == {"final", "best"}
    assert set(summary["results"]["best"]) == {"transductive", "support"}
    assert {p.name for p in run_dir.glob("eval_*")} >= {"eval_final.json", "eval_final.md", "eval_best.json"}
    if summary["best_step"] == 20:  # best is the last step: one evaluation, reported under both names
        assert summary["results"]["best"] == summary["results"]["final"]
        assert (run_dir / "eval_best.md").read_text() == (run_dir / "eval_final.md").read_text()
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10, 15, 20] and "val_accuracy" in lines[1]
    # a run directory from before runtime.eval_tasks_per_call existed still takes the setting
    config = json.loads((run_dir / "config.json").read_text())
    del config["runtime"]["eval_tasks_per_call"]
    (run_dir / "config.json").write_text(json.dumps(config))
    # calls of 6 tasks again (the training run's programs, from the session's compilation cache), 8 tasks this time
    argv = ["eval", str(run_dir), "--set", "eval.num_tasks=8", "--set", "runtime.eval_tasks_per_call=6"]
    assert cli.main([*argv, "--data-dir", DATA_DIR, "--no-progress"]) == 0
    err = capsys.readouterr().err
    for policy in ("transductive", "support"):  # 6 + 2 (padded to 6)
        assert f"evaluate best ({policy} BN) 6/8 " in err and f"evaluate best ({policy} BN) 8/8 " in err, err
    out = json.loads((run_dir / "eval" / "eval_best.json").read_text())
    assert out["transductive"]["num_tasks"] == 8
    assert 0.0 <= out["support"]["accuracy"] <= 1.0 and np.isfinite(out["support"]["ci95"])
    assert (
        cli.main(
            ["finetune", str(run_dir), "--num-tasks", "2", "--steps", "2", "--joint-steps", "2", "--data-dir", DATA_DIR]
        )
        == 0
    )
    ft = json.loads((run_dir / "finetune" / "finetune.json").read_text())
    assert set(ft) == {"loss", "accuracy"}
    assert cli.main(["eval", str(run_dir), "--checkpoint", "nope"]) == 2
    assert "has ['best.msgpack', 'meta_params.msgpack']" in capsys.readouterr().err


@needs_data
def test_bad_few_shot_configs_fail_before_compiling(tmp_path, capsys):
    base = [
        "train",
        "--config",
        "omniglot_5w1s_maml",
        "--smoke",
        "--data-dir",
        DATA_DIR,
        "--run-dir",
        str(tmp_path / "r"),
    ]
    assert cli.main([*base, "--set", "data.ways=5000"]) == 2
    assert "ways=5000 exceeds the 4400 classes available" in capsys.readouterr().err
    assert cli.main([*base, "--set", "data.queries=19", "--set", "data.shots=2"]) == 2
    assert "shots + queries = 2 + 19 = 21 exceeds the 20 examples per class" in capsys.readouterr().err
    assert cli.main([*base, "--set", "eval.bn=('bogus',)"]) == 2
    assert "eval.bn entries must be in" in capsys.readouterr().err
    assert cli.main([*base, "--set", "eval.bn=('running',)"]) == 2
    assert "needs running statistics, which only algorithm 'mamlpp' keeps" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "train",
                "--config",
                "omniglot_5w1s_maml",
                "--smoke",
                "--data-dir",
                str(tmp_path / "none"),
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Omniglot (TFDS 'omniglot' 3.0.0, or the original zips) not found" in err and "images_evaluation.zip" in err


OMNIGLOT_CONFIGS = sorted(n for n in available_configs() if n.startswith("omniglot_"))


def test_every_setting_has_every_algorithm():
    algos = ("maml", "fomaml", "reptile", "meta_sgd", "anil")
    wanted = {f"omniglot_{s}_{a}" for s in ("5w1s", "5w5s", "20w1s", "20w5s") for a in algos}
    assert wanted <= set(OMNIGLOT_CONFIGS), sorted(wanted - set(OMNIGLOT_CONFIGS))


@pytest.mark.parametrize("name", OMNIGLOT_CONFIGS)
@needs_data
def test_every_omniglot_config_builds(name):
    from metajax._src.app import experiment

    cfg = cli.load_config(name, smoke=True)
    cfg.data.data_dir = DATA_DIR
    exp = experiment.build(cfg)
    assert exp.learner.name == cfg.algorithm


@pytest.mark.parametrize("name", OMNIGLOT_CONFIGS)
def test_every_omniglot_config_states_its_protocol_and_source(name):
    """No data needed: the config's evaluation protocol and its docstring (run command, source, paper)."""
    full = cli.load_config(name)
    ways, shots = (int(x) for x in name.split("_")[1].rstrip("s").split("w"))
    assert (full.eval.ways, full.eval.shots, full.eval.queries, full.eval.num_tasks) == (ways, shots, 15, 600)
    doc = importlib.import_module(f"metajax.configs.{name}").__doc__
    assert "Source:" in doc and "paper" in doc.lower() and f"--config {name}" in doc
