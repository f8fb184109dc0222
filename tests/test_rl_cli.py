"""Meta-RL from the command line: configs build, bad settings fail before any compute, a smoke run writes the run
directory and the MAML paper's evaluation table, ``metajax eval`` re-evaluates it, a resumed run ends with the same
bytes as an uninterrupted one."""

import json

import pytest

from metajax._src.app import cli
from metajax._src.app.configs import apply_overrides, load_config
from metajax._src.app.experiment import build

RL_CONFIGS = (
    "navigation2d_maml_trpo",
    "navigation2d_maml_trpo_clipped",
    "navigation2d_fomaml",
    "navigation2d_meta_sgd",
    "cartpole_maml_trpo",
    "bandit_k5_maml_trpo",
)


@pytest.mark.parametrize("name", RL_CONFIGS)
def test_every_rl_config_loads_and_builds(name):
    for smoke in (False, True):
        exp = build(load_config(name, smoke))
        assert exp.stateful  # the run keeps its key (rollouts) and the DiCE state
    assert (exp.meta_step_for is not None) == name.endswith(("trpo", "trpo_clipped"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("env.horizon=0", "env.horizon must be an integer >= 1"),
        ("outer.max_kl=-0.01", "outer.max_kl must be > 0"),
        ("outer.ls_backtrack_ratio=1.5", "outer.ls_backtrack_ratio must be in (0, 1)"),
        ("data.num_trajectories=0", "data.num_trajectories must be an integer >= 1"),
        ("inner.estimator='plain'", "inner.estimator must be one of"),
        ("env.actions='raw'", "env.actions must be one of"),
        ("returns.gamma=1.5", "returns"),
        ("eval.num_tasks=0", "eval.num_tasks"),
        ("algorithm='meta_sgd'", "outer.opt='trpo' takes algorithm in"),
        ("algorithm='mamlpp'", "meta-RL policies have none"),
        ("runtime.memory_plan='auto'", "runtime.memory_plan must be 'off'"),
    ],
)
def test_bad_settings_fail_before_any_compute(override, message):
    config = apply_overrides(load_config("navigation2d_maml_trpo", True), [override])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(config)


def test_bad_settings_through_the_cli(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--config", "navigation2d_maml_trpo", "--smoke", "--no-progress", "--run-dir", str(run_dir)]
    assert cli.main([*argv, "--set", "env.horizon=0"]) == 2
    assert "env.horizon must be an integer >= 1, got 0" in capsys.readouterr().err
    assert cli.main([*argv, "--set", "outer.max_kl=-1.0"]) == 2
    assert "outer.max_kl must be > 0" in capsys.readouterr().err
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()


def _train(run_dir, *extra):
    argv = ["train", "--config", "navigation2d_maml_trpo", "--smoke", "--no-progress", "--run-dir", str(run_dir)]
    assert cli.main([*argv, *extra]) == 0


@pytest.mark.slow
def test_smoke_run_writes_the_run_and_the_evaluation_table(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _train(run_dir)
    out = capsys.readouterr().out
    for name in ("config.json", "metrics.jsonl", "summary.json", "meta_params.msgpack", "eval.json", "eval.md"):
        assert (run_dir / name).is_file(), name
    for name in ("adaptation.png", "trajectories.png", "learning.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert [p.name for p in sorted((run_dir / "checkpoints").iterdir())][-1] == "2"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert {"query_return", "support_return", "kl", "accepted"} <= set(records[0])
    assert all(r["kl"] <= 0.01 + 1e-6 for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["algorithm"] == "maml_trpo" and summary["steps"] == 2
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["actions"] == "normalized" and ev["num_tasks"] == 4 and ev["inner_lrs"] == [0.5, 0.25, 0.25]
    assert set(ev["results"]) == {"maml_trpo", "random"}
    for rows in ev["results"].values():
        assert [r["steps"] for r in rows] == [0, 1, 2, 3]
        assert all(r["mean"] < 0 and r["ci95"] >= 0 for r in rows)  # minus distances
    table = (run_dir / "eval.md").read_text()
    assert "'normalized'" in table and "| inner steps | maml_trpo return (mean ± 95% CI) |" in table
    assert "| 3 |" in out  # the table is printed

    # metajax eval RUN_DIR: the same protocol, the same numbers, in RUN_DIR/eval
    assert cli.main(["eval", str(run_dir), "--no-progress"]) == 0
    again = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert again["results"] == ev["results"]


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_same_bytes(tmp_path):
    """Two meta-steps in one go, and one then a second after a restart from the checkpoint: the same bytes."""
    small_eval = ["--set", "eval.num_tasks=1", "--set", "eval.num_trajectories=1", "--set", "eval.max_steps=1"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _train(whole, *small_eval)
    _train(resumed, *small_eval, "--set", "train.num_steps=1")
    _train(resumed, *small_eval)
    assert (resumed / "meta_params.msgpack").read_bytes() == (whole / "meta_params.msgpack").read_bytes()
    assert json.loads((resumed / "summary.json").read_text())["resumed_from"] == 1
    strip = lambda path: [  # noqa: E731 - timings differ between runs
        {k: v for k, v in json.loads(line).items() if k not in ("time_s", "it_per_s")}
        for line in path.read_text().splitlines()
    ]
    assert strip(resumed / "metrics.jsonl") == strip(whole / "metrics.jsonl")
