"""Training checkpoints with orbax: atomic, verified, with fallback to the previous good one.

Each checkpoint holds the training pytree (meta-parameters and outer state),
optional extra pytrees (the best parameters so far, so that they survive the
loss of ``best.msgpack``) and a small JSON record (step, best validation so
far, and a SHA-256 digest of every array). Orbax writes a step to a temporary directory and renames it when
complete, so a crash mid-save leaves no partial checkpoint visible; the digest
catches a checkpoint whose files were damaged afterwards. Restoring walks back
from the newest step to the first that restores and verifies, warning about
each one it skips.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np


def tree_digest(tree: Any) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def record_digest(record: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint record (its step, the arrays' digest and everything else but this digest)."""
    body = {k: v for k, v in record.items() if k != "record_digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class IncompatibleCheckpointError(ValueError):
    """A checkpoint exists but does not fit the current model or optimiser."""


class Checkpointer:
    """Save and restore ``(tree, record)`` pairs by step under ``directory``.

    Args:
      directory: where the step directories go.
      max_to_keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: Path, max_to_keep: int = 3):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False),
        )

    def save(self, step: int, tree: Any, record: dict[str, Any], extras: dict[str, Any] | None = None) -> None:
        """Write checkpoint ``step`` (synchronously: training donates its buffers right after).

        The record carries a digest of the arrays (``digest``; ``NAME_digest`` for each of ``extras``, pytrees
        saved as items of their own) and one of everything restored (arrays, step and the rest of the record).
        A save that orbax declines (it skips a step at or below the newest one it knows) raises
        ``RuntimeError``: a run never continues believing it has a checkpoint it does not have.
        """
        host = jax.device_get(tree)
        extras = {name: jax.device_get(x) for name, x in (extras or {}).items()}
        if {"tree", "record"} & set(extras):
            raise ValueError(f"extras: 'tree' and 'record' are reserved item names, got {sorted(extras)}.")
        record = dict(record, step=int(step), digest=tree_digest(host))
        record.update({f"{name}_digest": tree_digest(x) for name, x in extras.items()})
        record["record_digest"] = record_digest(record)
        ocp = self._ocp
        items = {name: ocp.args.StandardSave(x) for name, x in extras.items()}
        where = self.directory / str(step)
        self._check_space(step, [host, *extras.values()])
        try:
            with _quiet_orbax():
                saved = self.manager.save(
                    int(step),
                    args=ocp.args.Composite(
                        tree=ocp.args.StandardSave(host), record=ocp.args.JsonSave(record), **items
                    ),
                )
                self.manager.wait_until_finished()
        except Exception as err:
            if _disk_full(err):  # tensorstore says RESOURCE_EXHAUSTED, orbax's threads OSError: one line, named
                raise OSError(errno.ENOSPC, "No space left on device (writing a checkpoint)", str(where)) from None
            raise
        if not saved:
            raise RuntimeError(
                f"checkpoint step {step} was not written to {self.directory} (orbax declined it: its newest step is "
                f"{self.manager.latest_step()}). The run stops rather than continue without a checkpoint."
            )

    def _check_space(self, step: int, trees: list[Any]) -> None:
        """Refuse a save that cannot fit on the disk before orbax starts writing (a full disk mid-save gives a
        cascade of errors from orbax's and tensorstore's threads): twice the arrays' bytes plus 1 MB of
        metadata."""
        need = 2 * sum(np.asarray(x).nbytes for t in trees for x in jax.tree_util.tree_leaves(t)) + 2**20
        probe = self.directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < need:
            raise OSError(
                errno.ENOSPC,
                f"No space left on device: checkpoint step {step} needs about {need / 2**20:.1f} MB, "
                f"{free / 2**20:.1f} MB are free",
                str(self.directory),
            )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(self, template: Any) -> tuple[Any, dict[str, Any]] | None:
        """The newest checkpoint that restores into ``template``'s structure and verifies.

        Returns:
          ``(tree, record)`` or ``None`` when there is no usable checkpoint.

        Raises:
          IncompatibleCheckpointError: checkpoints exist but none has
            ``template``'s structure and shapes (another model or optimiser).
        """
        ocp = self._ocp
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        mismatch = None
        for step in reversed(self.steps()):
            try:
                out = self.manager.restore(
                    step,
                    args=ocp.args.Composite(tree=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()),
                )
            except Exception as err:  # noqa: BLE001 - orbax/tensorstore raise many types for bad files
                msg = (str(err).splitlines() or [type(err).__name__])[0][:300]
                if "shape" in msg.lower() or "structure" in msg.lower() or "mismatch" in msg.lower():
                    mismatch = msg
                    warnings.warn(
                        f"checkpoint {self.directory / str(step)} does not fit ({msg}); trying an older one.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                aside = self.set_aside(step)
                warnings.warn(
                    f"checkpoint {self.directory / str(step)} cannot be restored ({msg}); moved to {aside}, trying "
                    "an older one.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            tree, record = out["tree"], dict(out["record"])
            if _shapes(tree) != _shapes(template):
                mismatch = f"shapes {_shapes(tree)} != {_shapes(template)}"
                continue
            damaged = tree_digest(tree) != record.get("digest")
            if not damaged and "record_digest" in record:  # checkpoints written before 0.2 carry no record digest
                damaged = record_digest(record) != record["record_digest"] or record.get("step") != step
            if damaged:
                aside = self.set_aside(step)
                warnings.warn(
                    f"checkpoint {self.directory / str(step)} is corrupted (its arrays or its record do not match "
                    f"the digests written with them); moved to {aside}, trying an older one.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            return tree, record
        if mismatch is not None:
            raise IncompatibleCheckpointError(
                f"the checkpoints in {self.directory} do not fit this configuration's model and optimiser "
                f"({mismatch}). Use another --run-dir, or the configuration they were written with."
            )
        return None

    def restore_extra(self, name: str, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]] | None:
        """The extra pytree ``name`` from checkpoint ``step`` (default: the newest checkpoint that has it and verifies).

        Read-only: a checkpoint whose item or record does not verify is skipped (with a warning), not moved.

        Returns:
          ``(tree, record)`` or ``None`` when no checkpoint holds a usable ``name``.
        """
        ocp = self._ocp
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        steps = [step] if step is not None else list(reversed(self.steps()))
        for s in steps:
            if not (self.directory / str(s) / name).is_dir():
                continue
            try:
                out = self.manager.restore(
                    s,
                    args=ocp.args.Composite(
                        record=ocp.args.JsonRestore(), **{name: ocp.args.StandardRestore(abstract)}
                    ),
                )
            except Exception as err:  # noqa: BLE001 - orbax/tensorstore raise many types for bad files
                msg = (str(err).splitlines() or [type(err).__name__])[0][:300]
                warnings.warn(f"{name} in checkpoint {self.directory / str(s)} cannot be read ({msg}).", stacklevel=2)
                continue
            tree, record = out[name], dict(out["record"])
            if (
                _shapes(tree) != _shapes(template)
                or tree_digest(tree) != record.get(f"{name}_digest")
                or record_digest(record) != record.get("record_digest")
            ):
                warnings.warn(
                    f"{name} in checkpoint {self.directory / str(s)} does not match the digests written with it.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            return tree, record
        return None

    def set_aside(self, step: int) -> Path:
        """Move a damaged checkpoint out of the way (never delete it): ``corrupt-STEP`` beside the others.

        orbax then no longer counts the step, so the run saves it again when it gets there.
        """
        src = self.directory / str(step)
        dst = self.directory / f"corrupt-{step}"
        n = 1
        while dst.exists():
            n += 1
            dst = self.directory / f"corrupt-{step}.{n}"
        if src.exists():
            src.rename(dst)
        self.manager.reload()
        return dst

    def close(self) -> None:
        self.manager.close()


def _shapes(tree: Any) -> list[tuple[int, ...]]:
    return [tuple(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)]


def _disk_full(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}"
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or (
        "RESOURCE_EXHAUSTED" in text or "No space left on device" in text
    )


def _drop_closed_loop_noise(hook: Any) -> Any:
    """An unraisable-exception hook that drops asyncio's "Event loop is closed" (tensorstore's callbacks into
    orbax's finished event loops after a failed save: dozens of tracebacks before the real error) and passes
    everything else to ``hook``."""

    def quiet(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        hook(unraisable)

    quiet.metajax_quiet = True  # type: ignore[attr-defined]
    return quiet


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """While orbax saves: its worker threads' error logs are not printed (the error is raised, in one line, by
    :meth:`Checkpointer.save`), and the closed-event-loop noise is dropped for the rest of the process (it
    can arrive after the save has failed)."""
    if not getattr(sys.unraisablehook, "metajax_quiet", False):
        sys.unraisablehook = _drop_closed_loop_noise(sys.unraisablehook)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        absl.setLevel(level)
