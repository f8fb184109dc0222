"""Checkpoints: kill -9 / SIGTERM and resume give bit-identical parameters; corrupted checkpoints are skipped."""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest
from conftest import session_shared

from metajax._src.app.checkpoint import Checkpointer

ARGS = [
    "--smoke",
    "--no-progress",
    "--set",
    "train.num_steps=1500",
    "--set",
    "train.steps_per_call=50",
    "--set",
    "train.checkpoint_every=100",
    "--set",
    "runtime.cpu_threads=0",
    "--set",
    "eval.num_tasks=4",
    "--set",
    "eval.pretrain_steps=5",
    "--set",
    "eval.max_steps=2",
    "--set",
    "eval.report_steps=(0, 1, 2)",
    "--set",
    "eval.num_examples=0",
]


def train_cmd(run_dir):
    return [sys.executable, "-m", "metajax", "train", "--run-dir", str(run_dir), *ARGS]


def steps_done(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    try:
        return json.loads(lines[-1])["step"] if lines else 0
    except json.JSONDecodeError:
        return 0


def wait_for(run_dir, proc, step, timeout=240):
    t0 = time.time()
    while steps_done(run_dir) < step:
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.time() - t0 < timeout, "training made no progress"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    def compute():  # the uninterrupted run: once per session, whichever xdist worker gets here first
        run_dir = tmp_path_factory.mktemp("reference")
        subprocess.run(train_cmd(run_dir), check=True, capture_output=True, timeout=600)
        return (run_dir / "meta_params.msgpack").read_bytes()

    return session_shared("resume_reference", compute)


@pytest.mark.parametrize("kill_after", [780])  # metrics lines past the last checkpoint exist then
def test_kill_9_then_resume_is_bit_identical(tmp_path, reference, kill_after):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run_dir, proc, kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "meta_params.msgpack").exists()
    out = subprocess.run(train_cmd(run_dir), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming from the checkpoint at step" in out.stderr
    assert (run_dir / "meta_params.msgpack").read_bytes() == reference
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(50, 1501, 50))  # no line lost, none doubled


def test_sigterm_saves_and_resumes(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(run_dir, proc, 120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Run the same command again to resume" in err
    saved = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved % 50 == 0 and saved >= 150
    out = subprocess.run(train_cmd(run_dir), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and f"resuming from the checkpoint at step {saved}" in out.stderr
    assert (run_dir / "meta_params.msgpack").read_bytes() == reference


def test_other_config_in_same_run_dir_is_refused(tmp_path, reference):
    del reference
    run_dir = tmp_path / "run"
    subprocess.run(
        train_cmd(run_dir)[:-2] + ["--set", "train.num_steps=100"], check=True, capture_output=True, timeout=600
    )
    out = subprocess.run(train_cmd(run_dir) + ["--set", "inner.lr=0.02"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "holds checkpoints of a run with another configuration" in out.stderr
    assert "inner.lr" in out.stderr


def test_resume_allows_more_steps_and_other_runtime_settings_only():
    """train.num_steps and runtime.* may change on resume; anything else, or num_steps under annealing, may not."""
    from metajax._src.app.rundir import resume_change

    old = {"train": {"num_steps": 10}, "inner": {"lr": 0.4}, "outer": {"anneal": False}, "runtime": {"cpu_threads": 0}}
    same = json.loads(json.dumps(old))
    assert resume_change(old, same, "r") == []
    new = {**same, "train": {"num_steps": 20}, "runtime": {"cpu_threads": 1, "devices": 2}}
    assert resume_change(old, new, "r") == ["runtime.cpu_threads", "runtime.devices", "train.num_steps"]
    with pytest.raises(ValueError, match=r"differs in \['inner.lr', 'train.num_steps'\]"):
        resume_change(old, {**new, "inner": {"lr": 0.1}}, "r")
    annealed = {**old, "outer": {"anneal": True}}
    assert resume_change(annealed, {**annealed, "runtime": {"cpu_threads": 1}}, "r") == ["runtime.cpu_threads"]
    with pytest.raises(ValueError, match="anneals over train.num_steps"):
        resume_change(annealed, {**annealed, "train": {"num_steps": 20}}, "r")


def test_more_steps_extend_the_run(tmp_path, reference):
    """Changing only train.num_steps continues a run: 700 steps, then 1500, ends with the reference's bits."""
    run_dir = tmp_path / "run"
    subprocess.run(train_cmd(run_dir) + ["--set", "train.num_steps=700"], check=True, capture_output=True, timeout=600)
    fewer = subprocess.run(
        train_cmd(run_dir) + ["--set", "train.num_steps=600"], capture_output=True, text=True, timeout=600
    )
    assert fewer.returncode == 2 and "already has a checkpoint at step 700" in fewer.stderr
    out = subprocess.run(train_cmd(run_dir), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "continuing the run" in out.stderr and "resuming from the checkpoint at step 700" in out.stderr
    assert (run_dir / "meta_params.msgpack").read_bytes() == reference
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(50, 1501, 50))
    assert json.loads((run_dir / "summary.json").read_text())["resumed_from"] == 700


def test_annealed_run_cannot_be_extended(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "metajax", "train", "--config", "sinusoid_reptile", "--run-dir", str(run_dir)]
    cmd += ["--smoke", "--no-progress", "--set", "eval.num_tasks=2", "--set", "eval.num_examples=0"]
    subprocess.run(cmd + ["--set", "train.num_steps=20"], check=True, capture_output=True, timeout=600)
    out = subprocess.run(cmd + ["--set", "train.num_steps=40"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "anneals over train.num_steps" in out.stderr


CORRUPTION_SCRIPT = r"""
import json, sys, warnings
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
from metajax._src.app.checkpoint import Checkpointer, IncompatibleCheckpointError
root = Path(sys.argv[1])
ck = Checkpointer(root)
w = jax.random.normal(jax.random.PRNGKey(0), (1000,))  # incompressible: the data file is large
tree = {"w": w, "b": jnp.ones((3,))}
ck.save(1, tree, {"best": None})
ck.save(2, {"w": w + 1, "b": tree["b"]}, {"best": None})
damaged = 0
for path in (root / "2").rglob("*"):
    if path.is_file() and path.stat().st_size > 1000:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        damaged += 1
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    restored, record = ck.restore_latest(tree)
    try:
        ck.restore_latest({"w": jnp.zeros(7), "b": jnp.ones((3,))})
        incompatible = ""
    except IncompatibleCheckpointError as err:
        incompatible = str(err)
print(json.dumps({"damaged": damaged, "step": record["step"], "same": bool(np.array_equal(restored["w"], w)),
                  "warnings": [str(x.message) for x in caught], "incompatible": incompatible}))
"""


def test_corrupted_checkpoint_falls_back_to_previous(tmp_path):
    # in a subprocess: orbax leaves un-awaited reads behind when a damaged file fails to decode
    out = subprocess.run(
        [sys.executable, "-c", CORRUPTION_SCRIPT, str(tmp_path / "ck")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["damaged"] > 0 and r["step"] == 1 and r["same"]
    assert any("checkpoint" in w and ("corrupted" in w or "cannot be restored" in w) for w in r["warnings"])
    assert "do not fit this configuration" in r["incompatible"]


INTEGRITY_SCRIPT = r"""
import json, sys, warnings
from pathlib import Path
import jax.numpy as jnp, numpy as np
from metajax._src.app.checkpoint import Checkpointer
root = Path(sys.argv[1])
ck = Checkpointer(root)
tree = {"w": jnp.arange(2000.0)}
ck.save(1, tree, {"best": {"score": 0.5, "step": 1}})
ck.save(2, {"w": tree["w"] + 1}, {"best": {"score": 0.75, "step": 2}})
out = {}
# one digit of the record's step changed: the arrays are intact, the record is not
records = [p for p in (root / "2").rglob("*") if p.is_file() and '"step": 2' in p.read_text(errors="ignore")]
for p in records:
    p.write_text(p.read_text().replace('"step": 2', '"step": 9'))
out["records_edited"] = len(records)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    _, record = ck.restore_latest(tree)
out["restored_step"] = record["step"]
out["aside"] = sorted(p.name for p in root.iterdir() if p.name.startswith("corrupt-"))
out["steps_after"] = ck.steps()
out["warnings"] = [str(w.message) for w in caught]
ck.save(2, {"w": tree["w"] + 2}, {"best": None})  # the step is written again, not skipped
restored, record = ck.restore_latest(tree)
out["resaved"] = [record["step"], float(restored["w"][0])]
try:
    ck.save(1, tree, {"best": None})
    out["declined"] = ""
except RuntimeError as err:
    out["declined"] = str(err)
# the record digest deleted and the step edited: the step is still checked against the directory
import re
ck.save(3, {"w": tree["w"] + 3}, {"best": None})
for p in [p for p in (root / "3").rglob("*") if p.is_file() and '"step": 3' in p.read_text(errors="ignore")]:
    text = re.sub(r',?\s*"record_digest":\s*"[0-9a-f]+"', "", p.read_text())
    p.write_text(text.replace('"step": 3', '"step": 9'))
_, record = ck.restore_latest(tree)
out["without_digest"] = [record["step"], sorted(p.name for p in root.iterdir() if p.name.startswith("corrupt-"))]
print(json.dumps(out))
"""


def test_checkpoint_record_is_verified_set_aside_and_saved_again(tmp_path):
    """The digest covers the record (step, best); a damaged checkpoint is moved aside, never deleted, and the
    step is written again when training gets there; a save orbax declines is an error, not silence."""
    out = subprocess.run(
        [sys.executable, "-c", INTEGRITY_SCRIPT, str(tmp_path / "ck")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["records_edited"] >= 1
    assert r["restored_step"] == 1 and r["aside"] == ["corrupt-2"] and r["steps_after"] == [1]
    assert any("corrupt-2" in w for w in r["warnings"])
    assert r["resaved"] == [2, 2.0]
    assert "was not written" in r["declined"]
    assert r["without_digest"] == [2, ["corrupt-2", "corrupt-3"]]


def test_no_checkpoint_returns_none(tmp_path):
    ck = Checkpointer(tmp_path / "empty")
    assert ck.restore_latest({"w": jnp.zeros(2)}) is None
    ck.close()
    assert os.path.isdir(tmp_path / "empty")


def test_a_crash_while_saving_parameters_leaves_the_previous_file(tmp_path, monkeypatch):
    """save_params writes through a temporary and a rename: a half-written file never replaces a whole one."""
    from pathlib import Path

    from metajax._src.app import rundir as train
    from metajax._src.files import write_atomic

    path = tmp_path / "meta_params.msgpack"
    train.save_params(path, {"w": jnp.ones(3)})
    before = path.read_bytes()
    real_write = Path.write_bytes

    def crash_halfway(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_bytes", crash_halfway)
    with pytest.raises(OSError, match="No space left"):
        train.save_params(path, {"w": jnp.zeros(3)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    # the temporary is removed, and the digest beside the file still describes the file that stayed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta_params.msgpack", "meta_params.msgpack.sha256"]
    assert float(jnp.sum(train.load_params(path, {"w": jnp.zeros(3)})["w"])) == 3.0
    train.save_params(path, {"w": jnp.zeros(3)})
    assert float(jnp.sum(train.load_params(path, {"w": jnp.ones(3)})["w"])) == 0.0
    write_atomic(tmp_path / "config.json", '{"a": 1}')
    assert (tmp_path / "config.json").read_text() == '{"a": 1}'
