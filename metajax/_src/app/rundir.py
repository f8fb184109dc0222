"""The run directory: one writer at a time, the files a run writes and reads back, and resuming.

A run directory is a user's lab notebook. :class:`RunLock` makes sure one process writes it at a time;
:func:`check_run_directory` refuses a directory that is not a metajax run; :func:`check_resume` decides
whether a configuration may continue the run already in it; parameters, the config and the summary are
written atomically (:func:`~metajax._src.files.write_atomic`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import jax
import optax

from metajax._src.app.progress import say
from metajax._src.files import write_atomic
from metajax._src.pretrain import with_backbone
from metajax._src.version import __version__

LOCK_NAME = ".lock"


class RunDirectoryError(ValueError):
    """A run directory that cannot be used: held by another process, or not a metajax run."""


class RunLock:
    """An exclusive lock on a run directory, held while the run writes it.

    ``fcntl.flock`` on ``RUN_DIR/.lock``: the kernel releases it when the process ends, however it ends
    (``kill -9`` included), so a crashed run never leaves its directory locked. The holder writes its pid,
    host and command into the file, and a second process is refused at once with them.

    Multi-process runs (``runtime.distributed``): every process takes a lock of its own,
    ``.lock`` for process 0 and ``.lock.process-N`` for process ``N``, so the processes of one run do not
    exclude each other, while a second run started on the same directory collides with the first on
    every process index it shares.
    """

    def __init__(self, run_dir: Path, process_index: int = 0):
        self.path = Path(run_dir) / (LOCK_NAME if process_index == 0 else f"{LOCK_NAME}.process-{process_index}")
        self._file: Any = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # no flock on this OS: the filelock package's portable lock (no holder message)
            import filelock

            self._file = filelock.FileLock(str(self.path) + ".filelock")
            try:
                self._file.acquire(timeout=0)
            except filelock.Timeout:
                raise RunDirectoryError(self._busy("another process")) from None
            return self
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunDirectoryError(self._busy(holder)) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}: {' '.join(sys.argv)}\n")
        f.flush()
        self._file = f
        return self

    def _busy(self, holder: str) -> str:
        return (
            f"--run-dir {str(self.path.parent)!r} is in use by {holder}. Two runs writing one directory would "
            "overwrite each other's checkpoints and interleave their metrics: wait for it to finish (or stop it), "
            "or choose another --run-dir."
        )

    def release(self) -> None:
        if self._file is not None:
            if hasattr(self._file, "fileno"):
                self._file.close()  # closing the descriptor releases the flock
            else:
                self._file.release()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def is_run_directory(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a metajax run: a ``config.json`` with a task and an algorithm."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "task" in config and "algorithm" in config


def check_run_directory(run_dir: Path) -> None:
    """Refuse a non-empty directory that is not a metajax run (its files would be overwritten)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    names = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".write_test"))
    others = [n for n in names if not n.startswith(LOCK_NAME)]  # the lock alone: a run that stopped at start
    if others and not is_run_directory(run_dir):
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise RunDirectoryError(
            f"--run-dir {str(run_dir)!r} is not empty and is not a metajax run directory (it holds {shown}; "
            "no config.json written by metajax train). metajax writes config.json, metrics.jsonl, eval files and "
            "checkpoints there and would overwrite files of the same names: choose a new or empty directory."
        )


def read_json(path: Path, what: str) -> Any:
    """A JSON file read back, with an error naming the file when it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise RunDirectoryError(
            f"{str(path)!r} ({what}) is damaged: {err.msg} at line {err.lineno} column {err.colno}. "
            "Restore it from a copy, or choose a new --run-dir."
        ) from None


def versions() -> dict[str, str]:
    """The versions and machine a run ran with (``versions.json``)."""
    import flax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "metajax": __version__,
        "platform": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


def _metric_lines(path: Path) -> list[tuple[int, str, dict[str, Any] | None]]:
    """Every non-blank line of a metrics file as ``(line number, text, record or None when damaged)``."""
    out = []
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            row = None  # not a record with an integer step
        out.append((n, line, row))
    return out


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The records of a ``metrics.jsonl`` and its damaged lines as ``(line number, text)``.

    A line that is not a JSON object with a ``step`` (a line cut by a crash, a garbled byte) is skipped, not
    fatal: the good lines around it are all returned.
    """
    lines = _metric_lines(path)
    rows = [{k: float("nan") if v is None else v for k, v in row.items()} for _, _, row in lines if row is not None]
    return rows, [(n, line) for n, line, row in lines if row is None]


def report_damaged_lines(path: Path, bad: list[tuple[int, str]]) -> None:
    """Warn about damaged lines of a metrics file, naming the file and the line numbers."""
    if bad:
        numbers = ", ".join(str(n) for n, _ in bad[:10]) + (", ..." if len(bad) > 10 else "")
        say(f"metajax: {path}: skipped {len(bad)} damaged line(s) (line {numbers})")


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics records up to ``step`` (the rest is recomputed bit-identically on resume).

    Damaged lines are never dropped silently: they are appended to ``metrics.jsonl.damaged`` beside the file
    and reported with their line numbers; every good line up to ``step`` stays.
    """
    if not path.is_file():
        return
    lines = _metric_lines(path)
    keep = [line for _, line, row in lines if row is not None and row["step"] <= step]
    bad = [(n, line) for n, line, row in lines if row is None]
    if bad:
        report_damaged_lines(path, bad)
        damaged = path.with_name(path.name + ".damaged")
        with open(damaged, "a") as f:
            f.writelines(f"{line}\n" for _, line in bad)
        say(f"metajax: the damaged lines were set aside in {damaged}")
    write_atomic(path, "".join(x + "\n" for x in keep))


def save_params(path: Path, tree: Any) -> None:
    """Write a parameter tree (flax msgpack) atomically, with its SHA-256 in ``PATH.sha256`` beside it."""
    from flax import serialization

    data = serialization.to_bytes(jax.device_get(tree))
    write_atomic(path, data)
    write_atomic(digest_path(path), hashlib.sha256(data).hexdigest() + "\n")


def digest_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def set_aside(path: Path) -> Path:
    """Move a parameter file and its digest to ``PATH.damaged`` (``.damaged.N`` when taken): never deleted."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged.{n}")
    path.rename(aside)
    sidecar = digest_path(path)
    if sidecar.exists():
        sidecar.rename(aside.with_name(aside.name + ".sha256"))
    return aside


def set_aside_if_damaged(path: Path) -> Path | None:
    """:func:`set_aside` a parameter file whose SHA-256 differs from the one written with it (before it is written
    again); where it went, or ``None`` (missing, intact, or without a digest to tell)."""
    path, sidecar = Path(path), digest_path(path)
    if not (path.is_file() and sidecar.is_file()):
        return None
    if sidecar.read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest():
        return None
    return set_aside(path)


def load_params(path: Path, template: Any, remedy: str | None = None) -> Any:
    """Read a parameter tree written by :func:`save_params` into ``template``'s structure (``None``: as stored,
    nested dictionaries of arrays), verifying its digest. ``remedy``: what the damaged-file message advises
    (default: another checkpoint of the run, or retraining).

    Raises:
      RunDirectoryError: the file is missing, damaged (its SHA-256 differs from the one written with it) or not
        parameters of this structure, naming the file.
    """
    from flax import serialization

    path = Path(path)
    if not path.is_file():
        raise RunDirectoryError(f"{str(path)!r} does not exist.")
    data = path.read_bytes()
    sidecar = digest_path(path)
    if not sidecar.is_file():
        print(
            f"warning: {str(path)!r} has no {sidecar.name} beside it, so its contents cannot be verified.",
            file=sys.stderr,
        )
    elif sidecar.read_text().strip() != hashlib.sha256(data).hexdigest():
        other = "best" if path.name == "meta_params.msgpack" else "meta_params"
        raise RunDirectoryError(
            f"{str(path)!r} is damaged: its SHA-256 differs from the one written with it ({sidecar.name}). "
            + (remedy or f"Use another checkpoint of the run (metajax eval --checkpoint {other}), or retrain.")
        )
    try:
        return serialization.msgpack_restore(data) if template is None else serialization.from_bytes(template, data)
    except Exception as err:  # noqa: BLE001 - msgpack and flax raise several types for bad files
        raise RunDirectoryError(
            f"{str(path)!r} cannot be read as this configuration's parameters ({type(err).__name__}: {err})."
        ) from None


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# Settings that say where a run executes (cores, devices, processes), not what it computes: a resumed run may
# change them (continue on one core what started on all, or on another machine).
RESUMABLE_PREFIX = "runtime."

# Config keys added after runs were written without them, with the value that reproduces those runs: a run
# directory whose config lacks one of these resumes under a config that holds this value.
ADDED_KEYS = {
    "model.downsample": "pool",
    "model.compute_dtype": "float32",
    "runtime.memory_plan": "off",
    "runtime.memory_budget_gb": None,
}


def get_dotted(tree: dict, dotted: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"`` (``None`` where a key is missing)."""
    for k in dotted.split("."):
        tree = tree.get(k) if isinstance(tree, dict) else None
    return tree


def resume_change(old: dict, new: dict, run_dir: str) -> list[str]:
    """The config keys that differ between a run directory's config and the one given to resume it.

    Raises ``ValueError`` unless the differences are ones a resumed run allows: ``train.num_steps`` (extends
    the run, unless the outer rate anneals over it) and ``runtime.*``.
    """
    diff = sorted(
        k
        for k in _diff_keys(old, new)
        if not (k in ADDED_KEYS and get_dotted(old, k) is None and get_dotted(new, k) == ADDED_KEYS[k])
    )
    annealed = bool(new.get("outer", {}).get("anneal", False))
    fixed = [k for k in diff if not k.startswith(RESUMABLE_PREFIX)]
    if fixed and (fixed != ["train.num_steps"] or annealed):
        why = (
            " The outer rate anneals over train.num_steps (outer.anneal), so this run cannot be extended."
            if "train.num_steps" in fixed and annealed
            else ""
        )
        raise ValueError(
            f"--run-dir {run_dir!r} holds checkpoints of a run with another configuration (differs in "
            f"{fixed}).{why} Rerun with the same configuration to resume it (changing only train.num_steps "
            "extends it; runtime.* settings may change), or choose a new --run-dir."
        )
    return diff


BACKBONE_FILE = "backbone.msgpack"  # what metajax pretrain hands to metajax train --init


def check_init_run(run_dir: str | Path, what: str = "--init") -> Path:
    """A pre-training run directory's backbone file, or ``ValueError`` naming ``what`` and saying what is wrong."""
    run_dir = Path(run_dir)
    path = run_dir / BACKBONE_FILE
    if not (run_dir / "summary.json").is_file() or not path.is_file():
        raise ValueError(
            f"{what}: {str(run_dir)!r} is not a finished pre-training run (no summary.json and {BACKBONE_FILE}); "
            "pass a directory written by metajax pretrain, or run metajax pretrain --config ... --run-dir "
            f"{run_dir} first."
        )
    if read_json(run_dir / "summary.json", "the pre-training summary").get("kind") != "pretrain":
        raise ValueError(f"{what}: {str(run_dir)!r} is a meta-training run, not one written by metajax pretrain.")
    return path


# the data settings that decide which classes are training classes: a backbone pre-trained on another split has
# seen classes this run tests on
SPLIT_KEYS = ("task", "data.split", "data.split_seed")


def check_backbone_split(run_dir: str | Path, config: Any, what: str = "train.init") -> None:
    """Refuse a pre-training run whose training classes are not this config's (``ValueError`` naming both)."""
    stored = read_json(Path(run_dir) / "config.json", "the pre-training run's configuration")

    def get(tree, dotted):
        for k in dotted.split("."):
            if not hasattr(tree, "get"):
                return None
            tree = tree.get(k)
        return tree

    for key in SPLIT_KEYS:
        mine, theirs = get(config, key), get(stored, key)
        if mine != theirs:
            raise ValueError(
                f"{what}: {str(run_dir)!r} pre-trained with {key}={theirs!r}, this run has {key}={mine!r}: its "
                "backbone has seen other training classes, some of them this run's test classes, and would inflate "
                "the test accuracy. Pre-train with the same data settings (metajax pretrain --set "
                f"{key}={mine!r} ...)."
            )


def load_backbone(run_dir: str | Path, params: Any, what: str = "train.init", config: Any = None) -> Any:
    """``params`` (a freshly initialised few-shot model) with the backbone of the pre-training run ``run_dir``;
    given the run's ``config``, a backbone pre-trained on another split is refused (:func:`check_backbone_split`)."""
    path = check_init_run(run_dir, what)
    if config is not None:
        check_backbone_split(run_dir, config, what)
    try:
        # as stored: a per-step model (MAML++) takes a stateless backbone in another layout (with_backbone maps it)
        remedy = (
            "Pre-train again into a new directory (metajax pretrain --config CONFIG --run-dir NEW) and pass it instead."
        )
        return with_backbone(params, load_params(path, None, remedy))
    except (RunDirectoryError, ValueError) as err:
        raise ValueError(f"{what}: {err}") from None
