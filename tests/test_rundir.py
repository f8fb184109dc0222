"""The run directory: one writer at a time, nothing overwritten that is not ours, every file read back verified."""

import json
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from metajax._src.app import cli
from metajax._src.app.configs import distrust_stored_config
from metajax._src.app.rundir import (
    RunDirectoryError,
    RunLock,
    check_run_directory,
    load_params,
    read_metrics,
    save_params,
    truncate_metrics,
)

HOLD = r"""
import sys, time
from pathlib import Path
from metajax._src.app.rundir import RunLock
lock = RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _holder(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _stop(proc):
    proc.kill()  # SIGKILL: no clean-up runs in the holder, the kernel drops its lock
    proc.wait()
    proc.stdout.close()


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_crash_releases_the_lock(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunDirectoryError, match=rf"in use by pid {proc.pid} "):
            RunLock(tmp_path).acquire()
        other = RunLock(tmp_path, process_index=1).acquire()  # process 1 of a multi-process run: its own lock
        other.release()
    finally:
        _stop(proc)
    with RunLock(tmp_path):
        pass


def test_metajax_train_refuses_a_run_directory_in_use(tmp_path):
    (tmp_path / "run").mkdir()
    proc = _holder(tmp_path / "run")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "metajax", "train", "--smoke", "--run-dir", str(tmp_path / "run"), "--no-progress"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        _stop(proc)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"is in use by pid {proc.pid}" in out.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # nothing written


def test_a_directory_that_is_not_a_run_is_refused_and_left_alone(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "notes.md").write_text("keep me")
    assert cli.main(["train", "--smoke", "--no-progress", "--run-dir", str(mine)]) == 2
    assert "is not empty and is not a metajax run directory" in capsys.readouterr().err
    assert (mine / "config.json").read_text() == '{"my": "settings"}' and (mine / "notes.md").read_text() == "keep me"
    check_run_directory(tmp_path / "missing")  # a new directory is fine
    (tmp_path / "empty").mkdir()
    check_run_directory(tmp_path / "empty")


def test_a_run_directory_the_command_created_is_removed_when_nothing_was_written(tmp_path, capsys):
    run = tmp_path / "new"
    rc = cli.main(["train", "--config", "omniglot_5w1s_maml", "--smoke", "--data-dir", str(tmp_path / "none"),
                   "--run-dir", str(run)])  # fmt: skip
    assert rc == 2 and "not found" in capsys.readouterr().err
    assert not run.exists()


def test_parameters_are_verified_on_read(tmp_path, capsys):
    path = tmp_path / "best.msgpack"
    save_params(path, {"w": jnp.arange(4.0)})
    assert float(load_params(path, {"w": jnp.zeros(4)})["w"][3]) == 3.0
    data = bytearray(path.read_bytes())
    data[len(data) - 9] ^= 0x40  # one flipped bit in a float
    path.write_bytes(bytes(data))
    with pytest.raises(RunDirectoryError, match="best.msgpack' is damaged: its SHA-256 differs"):
        load_params(path, {"w": jnp.zeros(4)})
    path.write_bytes(bytes(data[:10]))
    (tmp_path / "best.msgpack.sha256").unlink()  # no digest (a file from before digests): still a clear error
    with pytest.raises(RunDirectoryError, match="cannot be read as this configuration's parameters"):
        load_params(path, {"w": jnp.zeros(4)})
    with pytest.raises(RunDirectoryError, match="does not exist"):
        load_params(tmp_path / "nope.msgpack", {"w": jnp.zeros(4)})
    # a flipped bit with the digest deleted still reads, but not silently
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert not np.array_equal(load_params(path, {"w": jnp.zeros(4)})["w"], np.arange(4.0))
    assert "has no best.msgpack.sha256 beside it, so its contents cannot be verified" in capsys.readouterr().err


def test_a_damaged_metrics_line_is_reported_and_set_aside_never_dropping_good_lines(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "query_loss": 1.0 / s}) for s in range(1, 201)]
    lines[49] = lines[49][:10] + "\x07garbled" + lines[49][10:]
    path.write_text("\n".join(lines) + "\n")
    rows, bad = read_metrics(path)
    assert len(rows) == 199 and [n for n, _ in bad] == [50]
    truncate_metrics(path, 150)  # what a resume from step 150 does
    kept = [json.loads(x)["step"] for x in path.read_text().splitlines()]
    assert kept == [s for s in range(1, 151) if s != 50]
    assert "skipped 1 damaged line(s) (line 50)" in capsys.readouterr().err
    assert "garbled" in (tmp_path / "metrics.jsonl.damaged").read_text()


def test_plot_names_the_file_and_line_of_a_damaged_record(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "query_loss": 2.0, "grad_norm": 1.0}\n{"step": 2, "qu\n')
    assert cli.main(["plot", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'metrics.jsonl'}: skipped 1 damaged line(s) (line 2)" in err


def test_pickle_opt_in_is_never_taken_from_a_stored_config(tmp_path, capsys):
    config = ConfigDict({"data": {"allow_pickle": True, "data_dir": "/somewhere"}})
    assert distrust_stored_config(config, tmp_path / "config.json").data.allow_pickle is False
    assert "ignoring data.allow_pickle=True stored in" in capsys.readouterr().err
    stored = tmp_path / "config.json"
    stored.write_text(json.dumps({"task": "sinusoid", "algorithm": "maml", "data": {"allow_pickle": True}}))
    assert cli.load_config(str(stored)).data.allow_pickle is False


def test_a_truncated_config_names_its_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"task": "sinusoid", "algorithm": "ma')
    (run / "meta_params.msgpack").write_bytes(b"")
    assert cli.main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "is damaged" in err and "line 1" in err


def test_ill_typed_and_empty_inputs_through_the_python_api():
    import metajax as mj

    loss = lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2)  # noqa: E731
    for bad in ("0.1", True):
        with pytest.raises(ValueError, match="inner_lr must be a finite number"):
            mj.maml(loss, "sgd", 1, inner_lr=bad)
    learner = mj.maml(loss, "sgd", 1, inner_lr=0.1)
    ok = (jnp.ones((2, 4)), jnp.ones((2, 4)))
    for support, query, what in (
        ((jnp.ones((0, 4)), jnp.ones((0, 4))), (jnp.ones((0, 4)), jnp.ones((0, 4))), "at least one task"),
        ((jnp.ones((2, 0)), jnp.ones((2, 0))), ok, "at least one support example"),
        (ok, (jnp.ones((2, 0)), jnp.ones((2, 0))), "at least one query example"),
    ):
        with pytest.raises(ValueError, match=what):
            learner.meta_grad(jnp.array(0.5), mj.Task(support, query))
    aux_learner = mj.maml(loss, "sgd", 1, inner_lr=0.1, has_aux=True)
    with pytest.raises(ValueError, match=r"has_aux=True: loss_fn must return a pair \(loss, aux\)"):
        aux_learner.meta_grad(jnp.array(0.5), mj.Task(ok, ok))


def test_integer_images_are_refused_by_every_convolution():
    import jax

    from metajax.models import conv4

    x = jnp.zeros((2, 28, 28, 1), jnp.uint8)
    for conv in ("patches", "winograd", "xla", "lax_vjp"):
        m = conv4(ways=5, filters=8, conv=conv)
        params = m.init(jax.random.PRNGKey(0))
        with pytest.raises(TypeError, match=r"x: conv4 expects floating-point inputs, got dtype uint8"):
            m.apply(params, x)


def test_bad_schedule_values_name_their_option(tmp_path, capsys):
    base = ["train", "--smoke", "--no-progress", "--run-dir", str(tmp_path / "r")]
    assert cli.main([*base, "--set", "train.checkpoint_every=-1"]) == 2
    assert "train.checkpoint_every must be an integer >= 0" in capsys.readouterr().err
    assert cli.main([*base, "--set", "model.hidden=(0,)"]) == 2
    assert "model.hidden[0] must be an integer >= 1" in capsys.readouterr().err
    time.sleep(0)  # (no training ran: both fail while building)


def test_an_os_error_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import errno

    from metajax._src.app import rundir

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(rundir, "write_atomic", full)
    monkeypatch.setattr("metajax._src.app.train.write_atomic", full)
    rc = cli.main(["train", "--smoke", "--no-progress", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1] == f"metajax train: error: {tmp_path / 'r' / 'config.json'}: No space left on device"


def test_a_huge_batch_is_refused_by_the_memory_check_before_any_batch_is_sampled(tmp_path, capsys, monkeypatch):
    """data.shots=2e7 asks for a 625 GB step: the refusal must come before the first batch's value check, which
    would sample ~4 GB of tasks eagerly (measured peak RSS of the command: 8.2 GB before, 0.5 GB after)."""

    def sampled(*args, **kwargs):
        raise AssertionError("the first batch was sampled before the memory check")

    monkeypatch.setattr("metajax._src.app.train.check_task_values", sampled)
    args = ["train", "--smoke", "--no-progress", "--run-dir", str(tmp_path / "r"), "--set", "data.shots=20000000"]
    assert cli.main(args) == 2
    assert "will not fit" in capsys.readouterr().err


def test_a_full_disk_at_a_checkpoint_is_one_line_naming_the_checkpoint(tmp_path, capsys, monkeypatch):
    """A disk that fills mid-run: refused before orbax starts writing (free space below twice the arrays), and
    a failure inside orbax's save is one line too, not dozens of tracebacks from its threads."""
    import collections
    import types

    from metajax._src.app import checkpoint

    run = tmp_path / "r"
    args = ["train", "--smoke", "--no-progress", "--run-dir", str(run), "--set", "train.checkpoint_every=10"]
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    head = f"metajax train: error: {run / 'checkpoints'}: No space left on device: checkpoint step 10"
    assert err[-1].startswith(head)
    assert not any("Traceback" in line for line in err)
    monkeypatch.undo()

    def exhausted(self, step, *a, **k):
        raise ValueError('RESOURCE_EXHAUSTED: Error writing local file "x": No space left on device [OS error: 28]')

    monkeypatch.setattr(checkpoint.Checkpointer, "_check_space", lambda self, step, trees: None)
    monkeypatch.setattr("orbax.checkpoint.CheckpointManager.save", exhausted)
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    where = run / "checkpoints" / "10"
    assert err[-1] == f"metajax train: error: {where}: No space left on device (writing a checkpoint)"
    # the closed-event-loop noise that tensorstore's callbacks print after such a failure is dropped, nothing else
    seen = []
    hook = checkpoint._drop_closed_loop_noise(seen.append)
    hook(types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed")))
    other = types.SimpleNamespace(exc_value=RuntimeError("something else"))
    hook(other)
    assert seen == [other]


def test_a_damaged_parameter_file_is_set_aside_never_overwritten_and_its_message_names_a_remedy(tmp_path):
    from metajax._src.app.rundir import set_aside_if_damaged

    path = tmp_path / "meta_params.msgpack"
    save_params(path, {"w": jnp.arange(4.0)})
    assert set_aside_if_damaged(path) is None and path.is_file()  # intact: left alone
    data = bytearray(path.read_bytes())
    data[len(data) - 9] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(RunDirectoryError, match=r"is damaged: .* Use another checkpoint of the run \(metajax eval "
                       r"--checkpoint best\)"):  # fmt: skip
        load_params(path, {"w": jnp.zeros(4)})
    with pytest.raises(RunDirectoryError, match="Do this instead"):
        load_params(path, {"w": jnp.zeros(4)}, "Do this instead.")
    aside = set_aside_if_damaged(path)
    assert aside == tmp_path / "meta_params.msgpack.damaged" and aside.read_bytes() == bytes(data)
    assert (tmp_path / "meta_params.msgpack.damaged.sha256").is_file() and not path.exists()
