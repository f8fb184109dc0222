"""Data parallelism over tasks on 8 simulated CPU devices (a subprocess: the device count is fixed at JAX start)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import session_shared

HERE = Path(__file__).parent


def run_with_devices(args, n=8, timeout=600, **kw):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture(scope="module")
def sharded():
    def compute():  # a ~30 s subprocess: once per session, whichever xdist worker gets here first
        proc = run_with_devices([sys.executable, str(HERE / "sharded_check.py")])
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line[7:])

    return session_shared("sharded_check", compute)


@pytest.mark.parametrize("algorithm", ["maml", "maml_map", "fomaml", "reptile", "imaml", "maml++"])
def test_sharded_meta_steps_equal_the_single_device_ones(sharded, algorithm):
    """Three Adam meta-steps on 1, 2 and 8 devices end where the unsharded step ends (float32 tolerance)."""
    assert sharded["devices"] == 8
    assert sharded["moved"] > 1e-2  # the steps really moved the parameters
    for n, diff in sharded[algorithm].items():
        assert diff < 1e-6, (algorithm, n, diff)


def test_sharded_evaluation_equals_the_single_device_one(sharded):
    """Adaptation curves and few-shot scores split over 1, 2 and 8 devices (12 tasks padded to 16 on 8)."""
    assert set(sharded["eval"]) == {f"{num}@{n}" for num in (12, 16) for n in (1, 2, 8)}
    for where, diff in sharded["eval"].items():
        assert diff < 1e-6, (where, diff)


def test_uneven_task_batches_and_too_many_devices_are_refused(sharded):
    for what in ("shard_tasks", "step"):
        assert (
            "meta-batch of 12 tasks does not split evenly over 8 devices: use a multiple of 8"
            in (sharded["errors"][what])
        )
    assert "devices must be an int in 1..8" in sharded["errors"]["mesh"]


def test_train_command_on_four_devices(tmp_path):
    run = tmp_path / "r"
    base = [sys.executable, "-m", "metajax", "train", "--smoke", "--no-progress", "--run-dir", str(run)]
    bad = run_with_devices([*base, "--set", "runtime.devices=4"], n=4)
    assert bad.returncode == 2
    assert "data.meta_batch_size of 25 tasks does not split evenly over 4 devices" in bad.stderr
    ok = run_with_devices([*base, "--set", "runtime.devices=4", "--set", "data.meta_batch_size=8"], n=4)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "4 devices" in ok.stderr
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 300


def test_cpu_streams_resolve_to_a_divisor_of_the_meta_batch(monkeypatch):
    import metajax as mj

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert mj.parallel.resolve_cpu_streams(0, 32) == 4  # one per core
    assert mj.parallel.resolve_cpu_streams("auto", 6) == 3  # reduced to a divisor of the meta-batch
    assert mj.parallel.resolve_cpu_streams(0, 25) == 1
    assert mj.parallel.resolve_cpu_streams(0, 2) == 2
    assert mj.parallel.resolve_cpu_streams(8, 32) == 8  # explicit counts may exceed the cores
    with pytest.raises(ValueError, match=r"runtime.cpu_streams=3 does not divide the meta-batch of 32 tasks"):
        mj.parallel.resolve_cpu_streams(3, 32, "runtime.cpu_streams")
    for bad in (-1, 1.5, True, "two"):
        with pytest.raises(ValueError, match=r"cpu_streams must be an int >= 1, or 0 / 'auto' for one per core"):
            mj.parallel.resolve_cpu_streams(bad, 32)


def test_host_streams_are_one_per_core_for_auto_even_when_training_uses_fewer(monkeypatch):
    from metajax._src.app.runtime import host_cpu_streams, planned_cpu_streams

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    auto = {"cpu_streams": 0, "devices": 1}
    assert (planned_cpu_streams(auto, 3), host_cpu_streams(auto, 3)) == (1, 2)  # Reptile's meta-batch of 3
    assert (planned_cpu_streams(auto, 32), host_cpu_streams(auto, 32)) == (2, 2)
    assert host_cpu_streams({"cpu_streams": 4}, 32) == 4  # explicit: as given
    assert host_cpu_streams({"cpu_streams": 1}, 32) == 1
    assert host_cpu_streams({"cpu_streams": 0, "devices": 2}, 32) == 1  # real devices: no split
    assert host_cpu_streams({"cpu_streams": 0, "distributed": True}, 32) == 1
    with pytest.raises(ValueError, match=r"runtime.cpu_streams=3 does not divide the meta-batch of 32 tasks"):
        host_cpu_streams({"cpu_streams": 3}, 32)


def test_cpu_streams_must_be_chosen_before_jax_runs():
    import jax

    import metajax as mj

    jax.numpy.zeros(1).block_until_ready()
    with pytest.raises(RuntimeError, match=r"must run before JAX computes anything"):
        mj.parallel.use_cpu_streams(len(jax.devices("cpu")) + 1)


def test_train_command_splits_the_cpu_into_task_streams(tmp_path):
    """runtime.cpu_streams=2 with no XLA flags: the CLI splits the CPU backend and shards the tasks over it."""
    run = tmp_path / "r"
    base = [sys.executable, "-m", "metajax", "train", "--smoke", "--no-progress", "--run-dir", str(run)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    bad = subprocess.run([*base, "--set", "runtime.cpu_streams=2"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "runtime.cpu_streams=2 does not divide the meta-batch of 25 tasks" in bad.stderr
    ok = subprocess.run(
        [*base, "--set", "runtime.cpu_streams=2", "--set", "data.meta_batch_size=8"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "2 CPU task streams" in ok.stderr
    assert "per call) on 2 CPU devices: XLA estimates" in ok.stderr  # the memory check counts both copies
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task_devices"] == 2 and summary["backend"] == "cpu"
    # `metajax eval` splits the same way; on one device it gives the same numbers as the 2-stream evaluation
    one = tmp_path / "one"
    ev = subprocess.run(
        [sys.executable, "-m", "metajax", "eval", str(run), "--set", "runtime.cpu_streams=1", "--out", str(one)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "CPU task streams" not in ev.stderr
    streamed, single = (json.loads((d / "eval.json").read_text())["results"] for d in (run, one))
    assert streamed.keys() == single.keys() and len(streamed) == 3
    for name, rows in streamed.items():
        for a, b in zip(rows, single[name], strict=True):
            assert a["mean"] == pytest.approx(b["mean"], rel=1e-5, abs=1e-7), (name, a, b)
