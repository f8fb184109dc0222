"""A checkpoint written before the one meta-state type (metajax 0.1.0, commit 4f93e6c) still resumes, bit-exactly.

``tests/data/checkpoint_0.1.0_sinusoid`` is the run directory of ``metajax train --smoke --set
train.checkpoint_every=100`` at that commit, cut back to its checkpoint at step 100 (its later checkpoints,
parameter files and plots removed). Resumed by today's code it must end with the bytes the uninterrupted run
ended with at that commit.
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "data" / "checkpoint_0.1.0_sinusoid"
# SHA-256 of meta_params.msgpack after the uninterrupted 300-step run at commit 4f93e6c (same machine type)
FINAL_DIGEST = "14616eb5eab3d5f52757fee940fd0e018fd8f70dfd17a53d240c1d5063b6e8eb"


@pytest.mark.slow
def test_a_checkpoint_from_before_the_one_meta_state_resumes_to_the_same_bytes(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    cmd = [sys.executable, "-m", "metajax", "train", "--smoke", "--set", "train.checkpoint_every=100"]
    cmd += ["--run-dir", str(run_dir), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming from the checkpoint at step 100" in proc.stderr
    digest = hashlib.sha256((run_dir / "meta_params.msgpack").read_bytes()).hexdigest()
    if digest != FINAL_DIGEST:
        # another CPU may round differently from the machine the fixture was written on: then the resumed run
        # must equal an uninterrupted run of today's code on this machine
        fresh = tmp_path / "fresh"
        cmd[cmd.index("--run-dir") + 1] = str(fresh)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert digest == hashlib.sha256((fresh / "meta_params.msgpack").read_bytes()).hexdigest()
