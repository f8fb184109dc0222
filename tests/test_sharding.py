"""Data parallelism over tasks on 8 simulated CPU devices (a subprocess: the device count is fixed at JAX start)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def run_with_devices(args, n=8, timeout=600, **kw):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture(scope="module")
def sharded():
    proc = run_with_devices([sys.executable, str(HERE / "sharded_check.py")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


@pytest.mark.parametrize("algorithm", ["maml", "maml_map", "fomaml", "reptile", "imaml"])
def test_sharded_meta_steps_equal_the_single_device_ones(sharded, algorithm):
    """Three Adam meta-steps on 1, 2 and 8 devices end where the unsharded step ends (float32 tolerance)."""
    assert sharded["devices"] == 8
    assert sharded["moved"] > 1e-2  # the steps really moved the parameters
    for n, diff in sharded[algorithm].items():
        assert diff < 1e-6, (algorithm, n, diff)


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
