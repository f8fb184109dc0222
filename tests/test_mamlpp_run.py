"""MAML++ from the command line: a smoke run with its three batch-norm columns, and kill -9 then resume."""

import json
import signal
import subprocess
import sys

import pytest
from test_omniglot import DATA_DIR, needs_data
from test_resume import steps_done, wait_for

ARGS = [
    "--config",
    "omniglot_5w1s_mamlpp",
    "--smoke",
    "--no-progress",
    "--set",
    "train.num_steps=30",
    "--set",
    "train.steps_per_call=5",
    "--set",
    "train.checkpoint_every=5",
    "--set",
    "train.eval_every=0",
    "--set",
    "eval.num_tasks=4",
    "--set",
    "runtime.cpu_threads=0",
]


def train_cmd(run_dir):
    return [sys.executable, "-m", "metajax", "train", "--run-dir", str(run_dir), "--data-dir", DATA_DIR, *ARGS]


@pytest.mark.slow  # three training runs of ~1 min compile each and their evaluations: ~6 min on 2 busy cores
@needs_data
def test_mamlpp_run_reports_running_statistics_and_resumes_bit_exactly_after_kill_9(tmp_path):
    reference = tmp_path / "reference"
    out = subprocess.run(train_cmd(reference), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((reference / "eval_final.json").read_text())
    assert set(results) == {"transductive", "support", "running"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in results.values())
    config = json.loads((reference / "config.json").read_text())
    assert config["algorithm"] == "mamlpp" and config["outer"]["schedule"] == "cosine"

    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run_dir, proc, 15, timeout=600)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert steps_done(run_dir) < 30 and not (run_dir / "meta_params.msgpack").exists()
    out = subprocess.run(train_cmd(run_dir), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming from the checkpoint at step" in out.stderr
    # meta_params.msgpack holds the meta-parameters (with the learned rates) and the running statistics
    assert (run_dir / "meta_params.msgpack").read_bytes() == (reference / "meta_params.msgpack").read_bytes()
    assert (run_dir / "eval_final.json").read_text() == (reference / "eval_final.json").read_text()
