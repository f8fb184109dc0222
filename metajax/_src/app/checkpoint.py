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
import math
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from metajax._src.app.progress import say
from metajax._src.app.rundir import RunDirectoryError, load_params, save_params, set_aside
from metajax._src.base import MetaState


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
            # the step a record names is its directory's, digest or not (an edited step would resume elsewhere)
            damaged = tree_digest(tree) != record.get("digest") or record.get("step") != step
            if not damaged and "record_digest" in record:
                damaged = record_digest(record) != record["record_digest"]
            elif not damaged:  # written before 0.2, or its digest deleted: only the arrays and the step are verified
                say(
                    f"checkpoint {self.directory / str(step)}: its record has no record_digest (written before "
                    "metajax 0.2, or removed); its arrays and step are verified, the rest of the record is not."
                )
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


# ---------------------------------------------------------------------------
# The best parameters so far: kept in every checkpoint beside best.msgpack.
# ---------------------------------------------------------------------------

BEST_ITEM = "best_params"  # the checkpoint item holding the best parameters so far


def repair_best_file(run_dir: Path, params: Any, best_step: int, source: str) -> None:
    """Rewrite ``best.msgpack`` from ``params`` when it is missing or damaged; a damaged file is set aside
    (``best.msgpack.damaged``, never deleted). An intact file is left alone."""
    path = Path(run_dir) / "best.msgpack"
    try:
        load_params(path, params)
        return
    except RunDirectoryError as err:
        problem = str(err)
    aside = set_aside(path) if path.exists() else None
    save_params(path, params)
    say(
        f"metajax: {problem} It was rewritten with the best parameters (step {best_step}) kept in {source}"
        + (f"; the damaged file was set aside as {aside}." if aside else ".")
    )


def load_best(run_dir: Path, template: Any, repair: bool = False) -> Any:
    """The best parameters of a run: ``best.msgpack``, or, when it is missing or damaged, the copy kept in the
    newest checkpoint that holds one (and verifies). With ``repair`` (the caller holds the run's lock)
    ``best.msgpack`` is then rewritten from that copy.

    Raises:
      RunDirectoryError: ``best.msgpack`` cannot be used and no checkpoint holds the best parameters.
    """
    run_dir = Path(run_dir)
    try:
        return load_params(run_dir / "best.msgpack", template)
    except RunDirectoryError as err:
        problem = err
    kept = None
    if (run_dir / "checkpoints").is_dir():
        ckpt = Checkpointer(run_dir / "checkpoints")
        try:
            kept = ckpt.restore_extra(BEST_ITEM, template)
        finally:
            ckpt.close()
    if kept is None:
        raise RunDirectoryError(f"{problem} No checkpoint of this run holds the best parameters either.") from None
    params, record = kept
    step, source = (record.get("best") or {}).get("step"), f"the checkpoint at step {record['step']}"
    if repair:
        repair_best_file(run_dir, params, step, source)
    else:
        say(f"metajax: {problem} Using the best parameters (step {step}) kept in {source} instead.")
    return params


def restore_best(ckpt: Checkpointer, record: dict[str, Any], template: Any, run_dir: Path) -> tuple[dict, Any]:
    """The best-so-far bookkeeping of a restored checkpoint: ``(best, best_host)``, where ``best`` is
    ``{"score", "step"}`` and ``best_host`` the best parameters kept in the checkpoint (``None`` if it keeps none);
    ``best.msgpack`` is rewritten from them when it is missing or damaged."""
    best = record["best"]
    best["score"] = -math.inf if best["score"] is None else best["score"]
    best_host = None
    if best["step"] is not None:
        kept = ckpt.restore_extra(BEST_ITEM, template, step=record["step"])
        if kept is not None:  # checkpoints written before 0.2 do not keep them
            best_host = jax.device_get(kept[0])
            repair_best_file(run_dir, best_host, best["step"], f"the checkpoint at step {record['step']}")
    return best, best_host


def save_checkpoint(ckpt: Checkpointer, step: int, tree: Any, best: dict, best_host: Any) -> None:
    """Checkpoint ``tree`` at ``step`` with the best score so far and, when there are any, the best parameters."""
    record_best = {"score": best["score"] if math.isfinite(best["score"]) else None, "step": best["step"]}
    extras = {BEST_ITEM: best_host} if best_host is not None else None
    ckpt.save(step, tree, {"best": record_best}, extras)


class StoredMetaState(NamedTuple):
    """The meta-state of a run without model state or key, as checkpoints store it: ``(opt_state, step)``."""

    opt_state: Any
    step: Any


def stored_meta_state(state: MetaState) -> Any:
    """``state`` as a checkpoint stores it.

    A run whose model has no state and draws no keys stores ``(opt_state, step)`` only, the layout of every
    checkpoint written before :class:`~metajax.MetaState` gained its ``model_state`` and ``key`` fields, so those
    checkpoints still restore (and new ones restore in older versions).
    """
    if state.model_state is None and state.key is None:
        return StoredMetaState(state.opt_state, state.step)
    return state


def loaded_meta_state(stored: Any) -> MetaState:
    """The inverse of :func:`stored_meta_state`."""
    return stored if isinstance(stored, MetaState) else MetaState(stored.opt_state, stored.step)


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
