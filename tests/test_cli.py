"""The command line: configs, overrides, the smoke run and its outputs."""

import json
import os
import re
from pathlib import Path

import pytest
from conftest import shared_run

from metajax._src.app import cli
from metajax._src.app.configs import available_configs

ALGOS = ["sinusoid_maml", "sinusoid_fomaml", "sinusoid_reptile", "sinusoid_meta_sgd", "sinusoid_anil"]


def test_every_sinusoid_config_loads_and_builds():
    from metajax._src.app import experiment as train

    assert set(ALGOS) <= set(available_configs())
    for name in ALGOS:
        cfg = cli.load_config(name, smoke=True)
        exp = train.build(cfg)
        assert exp.learner.name == cfg.algorithm


def test_overrides_and_their_errors():
    cfg = cli.load_config("sinusoid_maml")
    cli.apply_overrides(cfg, ["inner.lr=0.1", "inner.steps=3", "model.hidden=[8, 8]", "outer.lr=1"])
    assert cfg.inner.lr == 0.1 and cfg.inner.steps == 3 and cfg.model.hidden == (8, 8) and cfg.outer.lr == 1.0
    with pytest.raises(ValueError, match=r"unknown config key 'inner.rate': 'inner' has keys \["):
        cli.apply_overrides(cfg, ["inner.rate=0.1"])
    with pytest.raises(ValueError, match="inner.steps expects a value of type int"):
        cli.apply_overrides(cfg, ["inner.steps=fast"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        cli.apply_overrides(cfg, ["inner.steps"])
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        cli.load_config("nope")


def test_bad_values_fail_before_training(tmp_path, capsys):
    rc = cli.main(
        [
            "train",
            "--smoke",
            "--run-dir",
            str(tmp_path / "r"),
            "--set",
            "inner.lr=-1.0",
            "--set",
            "runtime.cpu_threads=0",
        ]
    )
    assert rc == 2
    assert "inner_lr must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
    rc = cli.main(
        [
            "train",
            "--smoke",
            "--run-dir",
            str(tmp_path / "r"),
            "--set",
            "data.meta_batch_size=0",
            "--set",
            "runtime.cpu_threads=0",
        ]
    )
    assert rc == 2
    assert "data.meta_batch_size must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("eval.num_tasks=0", "eval.num_tasks must be an integer >= 1, got 0"),
        ("eval.query_shots=0", "eval.query_shots must be an integer >= 1, got 0"),
        ("eval.diverged_above=-1", "eval.diverged_above must be a number > 0"),
        ("eval.report_steps=[0,100]", r"eval.report_steps must be step counts in \[0, eval.max_steps=32\]"),
        ("eval.max_steps=0", "eval.max_steps must be an integer >= 1, got 0"),
        ("train.nan_policy=maybe", "train.nan_policy must be 'stop' or 'skip', got 'maybe'"),
        ("inner.lr=nan", "inner_lr must be finite, got nan"),
        ("outer.lr=-inf", "outer.lr must be"),
    ],
)
def test_bad_eval_and_train_settings_fail_before_training_leaving_no_run_directory(tmp_path, capsys, setting, message):
    run = tmp_path / "r"
    assert cli.main(["train", "--smoke", "--run-dir", str(run), "--no-progress", "--set", setting]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not run.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_run_dir(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert cli.main(["train", "--smoke", "--run-dir", str(ro / "x")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_unwritable_run_dir_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["train", "--smoke", "--run-dir", str(blocker / "x"), "--set", "runtime.cpu_threads=0"]) == 2
    assert "--run-dir: cannot write" in capsys.readouterr().err


def sinusoid_smoke_run():
    """The default job's smoke run (250 steps: two calls of 100 and a remainder), trained once per test session."""
    sets = ["runtime.cpu_threads=0", "train.num_steps=250"]
    return shared_run("sinusoid_maml_smoke", "--smoke", *(a for s in sets for a in ("--set", s)))


def test_smoke_run_writes_everything():
    run_dir, err = sinusoid_smoke_run()
    for name in (
        "metrics.jsonl",
        "eval.json",
        "eval.md",
        "adaptation.png",
        "meta_params.msgpack",
        "config.json",
        "versions.json",
        "summary.json",
    ):
        assert (run_dir / name).is_file(), name
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [100, 200, 250]  # remainder chunk included
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["results"]) == {"maml", "random", "pretrained"}
    assert [r["steps"] for r in summary["results"]["maml"]] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 32]
    assert "meta-train 250/250" in err and "it/s" in err and "eta" in err
    assert (run_dir / "adaptation.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "learning.png").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tensorboard").iterdir())
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["train"]["num_steps"] == 250


def test_eval_command_on_a_sinusoid_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--config",
                "sinusoid_meta_sgd",
                "--smoke",
                "--run-dir",
                str(run_dir),
                "--no-progress",
                "--set",
                "runtime.cpu_threads=0",
                "--set",
                "train.num_steps=100",
            ]
        )
        == 0
    )
    assert cli.main(["eval", str(run_dir), "--set", "eval.num_tasks=20", "--set", "eval.pretrain_steps=10"]) == 0
    ev = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert ev["num_tasks"] == 20 and "meta_sgd" in ev["results"]
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
    # meta-train then fine-tune: three initialisations, curves per step
    assert cli.main(["finetune", str(run_dir), "--num-tasks", "4", "--steps", "3", "--joint-steps", "5"]) == 0
    ft = json.loads((run_dir / "finetune" / "finetune.json").read_text())
    assert list(ft["loss"]) == ["meta-trained (meta_sgd)", "random", "jointly trained"]
    assert [r["steps"] for r in ft["loss"]["random"]] == [0, 1, 3]
    assert (run_dir / "finetune" / "finetune.png").is_file()
    assert "joint-training baseline 5/5" in capsys.readouterr().err  # progress of the baseline (no terminal here)
    assert cli.main(["finetune", str(run_dir), "--opt", "lbfgs"]) == 2
    assert "--opt must be one of" in capsys.readouterr().err


def test_divergence_stops_with_a_clear_message_or_is_skipped(tmp_path, capsys):
    args = [
        "train",
        "--smoke",
        "--no-progress",
        "--set",
        "runtime.cpu_threads=0",
        "--set",
        "inner.lr=1e30",
        "--set",
        "train.num_steps=100",
        "--set",
        "eval.num_tasks=4",
        "--set",
        "eval.pretrain_steps=5",
    ]
    assert cli.main([*args, "--run-dir", str(tmp_path / "stop")]) == 1
    err = capsys.readouterr().err
    assert "non-finite value in steps 1..100" in err and "nan_policy=skip" in err
    assert "no checkpoint was written yet" in err and "checkpoint is step" not in err
    # following the message's advice on the same directory: it holds no checkpoint, so any configuration may start
    calm = [x if x != "inner.lr=1e30" else "inner.lr=0.01" for x in args]
    assert cli.main([*calm, "--run-dir", str(tmp_path / "stop")]) == 0
    assert cli.main([*args, "--run-dir", str(tmp_path / "skip"), "--set", "train.nan_policy=skip"]) == 0
    rec = json.loads((tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["skipped"] > 0


def test_resolved_config_reruns_to_the_same_metrics(tmp_path):
    first, _ = sinusoid_smoke_run()
    second = tmp_path / "b"
    assert cli.main(["train", "--config", str(first / "config.json"), "--run-dir", str(second), "--no-progress"]) == 0

    def metrics(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time_s", "it_per_s")} for r in rows]

    assert metrics(first) == metrics(second)
    assert (first / "meta_params.msgpack").read_bytes() == (second / "meta_params.msgpack").read_bytes()
    assert json.loads((first / "config.json").read_text()) == json.loads((second / "config.json").read_text())


def _harness():
    """benchmarks/harness.py, imported as the benchmark scripts import it (it is not part of the package)."""
    import importlib
    import sys

    bench_dir = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    return importlib.import_module("harness")


def test_benchmark_harness_runs_a_tiny_variant(tmp_path):
    """The harness itself (numbers are never asserted: speed lives in benchmarks/ only)."""
    bench = _harness()

    spec = {
        "workload": "sinusoid",
        "algorithm": "fomaml",
        "k": 1,
        "meta_batch": 3,
        "cpu_threads": 0,
        "steps_per_call": 5,
        "repeats": 2,
    }
    r = bench.worker(spec)
    assert r["s_per_it"] > 0 and len(r["times_s"]) == 2 and r["backend"] == "cpu"
    assert "| sinusoid | fomaml | 1 | 3 | all cores |" in bench.table([r])
    assert len(bench.variants(False, None)) > len(bench.variants(False, "sinusoid")) > 0
    grid = bench.variants(False, "grid")
    assert {(g["algorithm"], g["k"], g["meta_batch"]) for g in grid} >= {("imaml", 50, 32), ("reptile", 1, 4)}
    fake = [{**g, "s_per_it": 0.1 * g["k"], "peak_rss_mb": 500.0 + g["k"]} for g in grid]
    bench.plot_grid(fake, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 10_000
    ev = bench.variants(False, "eval_streams")
    assert ev[0]["workload"] == "evaluation" and ev[0]["eval_streams"] == 1  # one device, then the streams
    assert {e.get("host_streams") for e in ev if e["workload"] == "omniglot"} == {1, 2}
    pairs = bench.variants(False, "malloc")  # each pair: glibc's default, then huge pages; two rounds
    assert [m["malloc"] for m in pairs] == ["default", "hugetlb"] * 10
    assert bench._with_tunable("", "glibc.malloc.hugetlb=1") == "glibc.malloc.hugetlb=1"
    assert (
        bench._with_tunable("glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2", "glibc.malloc.hugetlb=1")
        == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    )
    tiny = {"workload": "evaluation", "inner": "sgd", "k": 1, "shots": 1, "num_tasks": 3, "conv": "auto"}
    r = bench.evaluation_worker({**tiny, "eval_streams": 1, "cpu_threads": 0, "repeats": 1})
    assert r["it_per_s"] > 0 and r["meta_batch"] == 3
    assert (
        "| evaluation | eval-sgd | 1 | 3 | 3 tasks, 1-shot, 1 sgd steps, one device (it = one task) |"
        in bench.table([r])
    )


def test_benchmark_run_writes_results_after_every_variant(tmp_path, monkeypatch):
    """Each variant in its own subprocess; the JSON/markdown are rewritten after each, so a killed run keeps them."""
    bench = _harness()

    tiny = {"workload": "sinusoid", "k": 1, "meta_batch": 3, "cpu_threads": 0, "steps_per_call": 5, "repeats": 1}
    specs = [{**tiny, "algorithm": "fomaml"}, {**tiny, "algorithm": "no_such_algorithm"}]
    seen = []
    real_table = bench.table

    def table(results):  # called once per variant: record what had been written by then
        seen.append(len(results))
        return real_table(results)

    monkeypatch.setattr(bench, "variants", lambda full, only: specs)
    monkeypatch.setattr(bench, "table", table)
    assert bench.main(["--out", str(tmp_path)]) == 0
    assert seen == [1, 2]
    (out,) = tmp_path.glob("*.json")
    data = json.loads(out.read_text())
    assert data["complete"] is True and len(data["results"]) == 2
    assert data["results"][0]["s_per_it"] > 0 and "error" in data["results"][1]
    assert "partial" not in out.with_suffix(".md").read_text()


def test_a_step_that_cannot_fit_is_refused_before_it_runs(tmp_path, capsys, monkeypatch):
    """XLA's memory analysis against the free memory (here an override of 1 MB) stops the run after compiling."""
    monkeypatch.setenv("METAJAX_MEMORY_LIMIT_MB", "1")
    run = tmp_path / "r"
    sets = ["runtime.cpu_threads=0", "data.meta_batch_size=50"]  # 50 tasks: ~2 MB in float32
    rc = cli.main(
        ["train", "--smoke", "--no-progress", "--run-dir", str(run), *(a for s in sets for a in ("--set", s))]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "the training step (100 meta-steps per call) will not fit: XLA estimates" in err
    assert "1 MB free" in err and "task_chunk" in err
    assert not (run / "metrics.jsonl").read_text().strip()  # nothing was trained


def test_the_resume_hint_names_the_run_directory_the_command_chose():
    import argparse

    chosen = Path("runs/sinusoid_maml-20261208-000000")
    assert cli.resume_hint(argparse.Namespace(run_dir=None), chosen) == (
        f"Run the same command again with --run-dir {chosen}"
    )
    assert cli.resume_hint(argparse.Namespace(run_dir="mine"), Path("mine")) == "Run the same command again"


def test_eval_refuses_an_output_directory_it_cannot_write_before_loading_anything(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # never read: the output directory is checked first
    (tmp_path / "file").write_text("")
    assert cli.main(["eval", str(run), "--out", str(tmp_path / "file" / "eval")]) == 2
    err = capsys.readouterr().err
    assert "--out: cannot write the evaluation to" in err and "file/eval" in err
    (run / "eval").write_text("")  # the default RUN_DIR/eval cannot be a directory: --out is suggested
    assert cli.main(["eval", str(run)]) == 2
    assert "Pass --out DIR to write the evaluation elsewhere" in capsys.readouterr().err
