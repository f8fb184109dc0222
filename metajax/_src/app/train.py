"""Meta-training driven by a config: the training loop with checkpoints and metric sinks, and a whole run.

:func:`run` is what ``metajax train`` does: lock and check the run directory, build the experiment, meta-train
(resuming from its checkpoints), evaluate, plot and write the summary. :func:`meta_train` is the loop.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from metajax._src.app.checkpoint import (
    Checkpointer,
    load_best,
    loaded_meta_state,
    restore_best,
    save_checkpoint,
    stored_meta_state,
)
from metajax._src.app.experiment import build
from metajax._src.app.experiment_base import Experiment, initial_meta_state, initial_run_params
from metajax._src.app.memplan import (
    PLAN_FILE,
    budget_bytes,
    gradient_ladder,
    memory_settings,
    plan_record,
    planned_config,
    read_plan,
)
from metajax._src.app.progress import Progress, say
from metajax._src.app.rundir import (
    RESUMABLE_PREFIX,
    RunLock,
    check_run_directory,
    get_dotted,
    read_json,
    resume_change,
    save_params,
    set_aside_if_damaged,
    truncate_metrics,
    versions,
)
from metajax._src.app.runparams import join_run_params, split_run_params
from metajax._src.compile_cache import compilation_cache_events
from metajax._src.files import strict_json, write_atomic
from metajax._src.memory import (
    MemoryEstimate,
    MemoryPlan,
    check_fits,
    compiled_memory,
    format_bytes,
    plan_memory,
    release_host_memory,
)
from metajax._src.meta_step import make_train_loop
from metajax._src.sharding import replicate, replicated
from metajax._src.validation import check_task_values


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"interrupted by signal {signum} at step {step}; a checkpoint was saved")
        self.step, self.signum = step, signum


class MetricSink(Protocol):
    """Where the training loop sends one record (a dict with ``step`` and float metrics) per compiled call."""

    def write(self, record: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per line, flushed after each (``metrics.jsonl``; ``metajax plot`` reads it)."""

    def __init__(self, path: Path):
        self.file = open(path, "a")  # noqa: SIM115 - held open for the run

    def write(self, record: dict[str, float]) -> None:
        self.file.write(strict_json(record, indent=None) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardSink:
    """TensorBoard scalars in ``run_dir/tensorboard`` (tensorboardX).

    On a resume, ``purge_step`` makes TensorBoard drop the events a killed process wrote past the checkpoint,
    as the metrics file does.
    """

    def __init__(self, run_dir: Path, start: int):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start if start else None)

    def write(self, record: dict[str, float]) -> None:
        for k, v in record.items():
            if k != "step":
                self.writer.add_scalar(k, v, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def default_sinks(run_dir: Path, start: int) -> list[MetricSink]:
    """``metrics.jsonl`` and TensorBoard (when tensorboardX is installed), from process 0 only (multi-host)."""
    if jax.process_index() != 0:
        return []
    sinks: list[MetricSink] = [JsonLinesSink(run_dir / "metrics.jsonl")]
    try:
        sinks.append(TensorBoardSink(run_dir, start))
    except ImportError:
        pass
    return sinks


def host_scaled(est: MemoryEstimate | None, mesh: Any) -> MemoryEstimate | None:
    """An estimate of a program sharded over ``mesh`` as it weighs on one memory: CPU task streams hold one copy per
    device in the same host RAM; an accelerator's estimate is per device already."""
    host_devices = cpu_devices(mesh)
    return est.times(host_devices) if est is not None and host_devices > 1 else est


def cpu_devices(mesh: Any) -> int:
    """How many of ``mesh``'s devices are CPU devices (task streams sharing the host's RAM)."""
    return sum(d.platform == "cpu" for d in mesh.devices.flat)


def training_step_estimate(exp: Experiment, learner: Any, skip_nonfinite: bool = False) -> MemoryEstimate | None:
    """XLA's memory estimate of ``learner``'s training step as :func:`meta_train` compiles it (one meta-step per
    call; the steps of a call share their buffers), from the shapes alone: nothing is allocated or run."""
    mesh = exp.runtime.mesh
    ms = exp.make_meta_step(learner, skip_nonfinite=skip_nonfinite, mesh=mesh)

    def start(key):
        p = initial_run_params(exp, key, learner=learner)
        return split_run_params(p)[0], initial_meta_state(exp, ms, p, key)

    key = jax.random.PRNGKey(0)
    placed = replicated(mesh)
    params, state, data = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placed),
        (*jax.eval_shape(start, key), tuple(exp.data)),
    )
    loop = jax.jit(make_train_loop(ms, exp.sample_tasks, 1), donate_argnums=(0, 1))
    compiled = loop.lower(params, state, key, *data).compile()
    return host_scaled(compiled_memory(compiled), mesh)


def _chunk(done: int, total: int, *periods: int) -> int:
    """Steps in the next compiled call: a function of ``done`` only, so a resumed run repeats the schedule."""
    n = total - done
    for p in periods:
        if p:
            n = min(n, p - done % p)
    return n


def meta_train(
    exp: Experiment, run_dir: Path, progress: bool | None = None, sinks: list[MetricSink] | None = None
) -> tuple[Any, dict[str, Any]]:
    """Meta-train with checkpoints; resumes from ``run_dir/checkpoints`` when there are any.

    Every compiled chunk's metrics go to each of ``sinks`` (default :func:`default_sinks`: one JSON line in
    ``run_dir/metrics.jsonl`` and TensorBoard scalars, from process 0). With
    ``exp.validate`` and ``train.eval_every > 0`` the meta-parameters are
    scored every ``eval_every`` steps and the best saved to ``best.msgpack``.
    A checkpoint (orbax) is written every ``train.checkpoint_every`` steps, at
    the end, and on SIGINT/SIGTERM (then :class:`Interrupted` is raised). Task
    batches are keyed by step and chunk boundaries depend only on the step, so
    a run resumed from any checkpoint ends with the same bits as an
    uninterrupted one (on the same machine and versions).
    """
    cfg = exp.config
    key = jax.random.PRNGKey(cfg.seed)
    init_key, train_key = jax.random.split(key)
    start = initial_run_params(exp, init_key, cfg.train.get("init"))
    meta_params = split_run_params(start)[0]
    nan_policy = cfg.train.get("nan_policy", "stop")
    if nan_policy not in ("stop", "skip"):
        raise ValueError(f"train.nan_policy must be 'stop' or 'skip', got {nan_policy!r}.")
    mesh = exp.runtime.mesh
    ms = exp.make_meta_step(skip_nonfinite=nan_policy == "skip", mesh=mesh)  # meta-RL's TRPO: its own outer step
    # a model with state (mamlpp) keeps it and a key for per-task randomness in the meta-state
    state = initial_meta_state(exp, ms, start, jax.random.fold_in(key, 1))

    def run_params(mp, st):
        """What is validated, evaluated and saved: the meta-parameters, with the model state when there is one."""
        return join_run_params(mp, st.model_state)

    total, chunk = cfg.train.num_steps, min(cfg.train.steps_per_call, cfg.train.num_steps)
    eval_every = cfg.train.get("eval_every", 0) if exp.validate is not None else 0
    ckpt_every = cfg.train.get("checkpoint_every", 0)
    ckpt = Checkpointer(run_dir / "checkpoints")
    done, best = 0, {"score": -math.inf, "step": None}
    best_host = None  # the best parameters so far (host copy), kept in every checkpoint beside best.msgpack
    had = ckpt.steps()
    restored = ckpt.restore_latest({"meta_params": meta_params, "state": stored_meta_state(state)})
    if restored is None and had:
        say(
            f"metajax train: none of the checkpoints in {ckpt.directory} (steps {had}) could be restored; they were "
            "set aside as corrupt-STEP there. Starting over from step 0."
        )
    if restored is not None:
        tree, record = restored
        meta_params, state, done = tree["meta_params"], loaded_meta_state(tree["state"]), record["step"]
        best, best_host = restore_best(ckpt, record, run_params(meta_params, state), run_dir)
        truncate_metrics(run_dir / "metrics.jsonl", done)
        say(f"resuming from the checkpoint at step {done}")
    else:
        truncate_metrics(run_dir / "metrics.jsonl", 0)
    # parameters, optimiser state and the device-resident data on every device of the mesh
    meta_params, state, data = replicate((meta_params, state, tuple(exp.data)), mesh)

    def check_first_batch():
        check_task_values(
            exp.sample_tasks(jax.random.fold_in(train_key, 0), *exp.data),
            "training tasks",
            num_classes=cfg.data.get("ways"),
        )

    # one eager batch first: bad data (NaN inputs, labels out of range) fails here, before anything compiles;
    # a batch too large to sample casually (data.shots=10**7) waits until the memory check has passed
    batch = jax.eval_shape(exp.sample_tasks, jax.random.fold_in(train_key, 0), *exp.data)
    batch_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(batch))
    eager_check = batch_bytes <= EAGER_CHECK_BYTES
    if eager_check:
        check_first_batch()
    runners: dict[int, Callable] = {}

    def runner(n):
        if n not in runners:
            jitted = jax.jit(make_train_loop(ms, exp.sample_tasks, n), donate_argnums=(0, 1))
            # compile explicitly: XLA's memory analysis says whether the step fits before it runs
            t = time.perf_counter()
            with compilation_cache_events() as seen:
                compiled = jitted.lower(meta_params, state, train_key, *data).compile()
            how = f"compiled in {time.perf_counter() - t:.1f} s"
            if seen["hits"]:
                how = "loaded from the compilation cache"
            say(f"metajax train: the training step ({n} meta-steps per call) {how}")
            if cfg.train.get("memory_check", True):
                est, what = host_scaled(compiled_memory(compiled), mesh), f"the training step ({n} meta-steps per call)"
                if cpu_devices(mesh) > 1:
                    what += f" on {cpu_devices(mesh)} CPU devices"
                report = check_fits(est, what)
                say(f"metajax train: {report}")
            runners[n] = compiled
            release_host_memory()  # the compiler's freed heap back to the OS
        return runners[n]

    def save():
        save_checkpoint(ckpt, done, {"meta_params": meta_params, "state": stored_meta_state(state)}, best, best_host)

    stop, restore_signals = catch_stop_signals()
    bar = Progress(total, progress, start=done)
    if sinks is None:
        sinks = default_sinks(run_dir, done)
    t0, compile_s = time.perf_counter(), None
    try:
        if not eager_check and done < total:
            runner(_chunk(done, min(total, done + chunk), eval_every, ckpt_every))  # compiles and checks memory
            check_first_batch()
        while done < total:
            n = _chunk(done, min(total, done + chunk), eval_every, ckpt_every)
            t = time.perf_counter()
            meta_params, state, metrics = runner(n)(meta_params, state, train_key, *data)
            metrics = {
                k: float(np.sum(v)) if k == "skipped" else float(np.mean(v)) for k, v in jax.device_get(metrics).items()
            }
            dt = time.perf_counter() - t
            compile_s = dt if compile_s is None else compile_s
            done += n
            rec = {
                "step": done,
                "time_s": round(time.perf_counter() - t0, 3),
                "it_per_s": round(n / dt, 3),
                **metrics,
            }
            params_ok = all(bool(np.all(np.isfinite(x))) for x in jax.tree_util.tree_leaves(meta_params))
            if not params_ok or (
                nan_policy == "stop"
                and not math.isfinite(metrics["query_loss" if "query_loss" in metrics else "support_loss"])
            ):
                for sink in sinks:
                    sink.write(rec)
                steps = ckpt.steps()
                last = f"the last good checkpoint is step {steps[-1]}" if steps else "no checkpoint was written yet"
                raise FloatingPointError(
                    f"meta-training hit a non-finite value in steps {done - n + 1}..{done} "
                    f"(query_loss={metrics.get('query_loss', metrics.get('support_loss'))}); {last}. "
                    "train.nan_policy=skip skips such updates, --debug-nans finds the operation"
                )
            if eval_every and (done % eval_every == 0 or done == total):
                score = exp.validate(
                    run_params(meta_params, state), on_chunk=lambda k, m: bar.note(f"validation {k}/{m} tasks")
                )
                rec["val_accuracy"] = score
                if score > best["score"]:
                    best = {"score": score, "step": done}
                    best_host = jax.device_get(run_params(meta_params, state))  # the next call donates them
                    save_params(run_dir / "best.msgpack", best_host)
            for sink in sinks:
                sink.write(rec)
            if (ckpt_every and done % ckpt_every == 0) or done == total or stop:
                save()
            key = "query_loss" if "query_loss" in metrics else "support_loss"
            shown = {key: metrics[key]}
            if "query_accuracy" in metrics:
                shown["acc"] = metrics["query_accuracy"]
            if "query_return" in metrics:  # meta-RL: the adapted policy's mean episode return
                shown["return"] = metrics["query_return"]
            if "val_accuracy" in rec:
                shown["val_acc"] = rec["val_accuracy"]
            bar.update(done, shown)
            if stop and done < total:
                raise Interrupted(done, stop["signum"])
    finally:
        bar.close()
        ckpt.close()
        for sink in sinks:
            sink.close()
        restore_signals()
    wall = time.perf_counter() - t0
    info = {
        "train_wall_s": round(wall, 2),
        "first_call_s": round(compile_s or 0.0, 2),
        "steps": total,
        "resumed_from": restored[1]["step"] if restored is not None else None,
        "task_devices": mesh.shape["tasks"],
        "backend": jax.default_backend(),
    }
    if best["step"] is not None:
        info.update(best_step=best["step"], best_val_accuracy=best["score"])
    return run_params(meta_params, state), info


def catch_stop_signals() -> tuple[dict[str, int], Callable[[], None]]:
    """Record SIGINT/SIGTERM in the returned dict (``signum``) instead of raising, so a loop can checkpoint and
    stop between calls; the returned function puts the previous handlers back. Off the main thread: no handling."""
    stop: dict[str, int] = {}
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[sig] = signal.signal(sig, lambda signum, frame: stop.setdefault("signum", signum))
        except ValueError:  # not the main thread: no signal handling
            pass

    def restore() -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    return stop, restore


# a first batch of training tasks larger than this is sampled for its value check only after the memory check
EAGER_CHECK_BYTES = 256 * 2**20


def check_resume(config: Any, run_dir: Path) -> None:
    """Refuse a configuration that cannot continue the checkpointed run in ``run_dir``; say what a resume changes.

    A directory without checkpoints (a run that stopped before its first one: a memory-check refusal, a NaN
    stop) takes any configuration.
    """
    previous = run_dir / "config.json"
    if not previous.is_file() or not (run_dir / "checkpoints").is_dir():
        return
    old, new = read_json(previous, "the run's configuration"), json.loads(config.to_json_best_effort())
    if old == new:
        return
    reached = max(checkpoint_steps(run_dir), default=None)
    if reached is None:
        return
    change = resume_change(old, new, str(run_dir))
    if config.train.num_steps < reached:
        raise ValueError(
            f"train.num_steps={config.train.num_steps}: the run in {str(run_dir)!r} already has a checkpoint at "
            f"step {reached}; give at least {reached} to continue it, or choose a new --run-dir."
        )
    if "train.num_steps" in change:
        say(
            f"metajax train: continuing the run in {run_dir} to {config.train.num_steps} meta-steps "
            f"(it was configured for {old['train']['num_steps']}; checkpoints up to step {reached})"
        )
    moved = [k for k in change if k.startswith(RESUMABLE_PREFIX)]
    if moved:
        say(
            "metajax train: resuming with other runtime settings ("
            + ", ".join(f"{k}: {get_dotted(old, k)!r} -> {get_dotted(new, k)!r}" for k in moved)
            + "); they decide where it executes, not what it computes (the float rounding may differ)"
        )


def run(config: Any, run_dir: Path, progress: bool | None = None) -> dict[str, Any]:
    """Build, meta-train, save, evaluate. Returns the summary written to ``summary.json``.

    The run directory is locked for the whole run (:class:`~metajax._src.app.rundir.RunLock`): a second
    process on it is refused at once. A non-empty directory that is not a metajax run is refused.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir, jax.process_index()):
        check_run_directory(run_dir)
        return _run(config, run_dir, progress)


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps ``run_dir`` holds checkpoints of (empty: a new run, or one that stopped before its first)."""
    if not (run_dir / "checkpoints").is_dir():
        return []
    ckpt = Checkpointer(run_dir / "checkpoints")
    try:
        return ckpt.steps()
    finally:
        ckpt.close()


def memory_plan(exp: Experiment, run_dir: Path) -> tuple[MemoryPlan, str, float | None] | None:
    """The task chunk and gradient strategy that fit the run's memory budget (``runtime.memory_plan``).

    ``exp``: the experiment built from the run's config (its candidates are compiled from it, its data reused).
    Returns the plan with the ``runtime.memory_plan`` mode and the requested budget (what ``memory_plan.json``
    records), ``None`` when the config asks for no plan. A plan recorded in ``run_dir`` for the same
    ``runtime.memory_plan`` and ``runtime.memory_budget_gb`` is kept when the run has checkpoints (a resumed run
    computes as it did; an edited or damaged one is refused, :func:`~metajax._src.app.memplan.read_plan`);
    otherwise the candidates are compiled (:func:`~metajax._src.memory.plan_memory`) and what was chosen is said.
    """
    config = exp.config
    mode, requested = memory_settings(config)
    if mode == "off":
        return None
    tasks = config.data.meta_batch_size // exp.runtime.mesh.size
    if checkpoint_steps(run_dir):
        recorded = read_plan(run_dir, config, tasks)
        if recorded is not None and recorded[1:] == (mode, requested):
            say(f"metajax train: keeping this run's memory plan: {recorded[0].summary()}")
            return recorded
    budget = budget_bytes(requested)
    skip = config.train.get("nan_policy", "stop") == "skip"
    say(
        f"metajax train: planning memory for a {format_bytes(budget)} budget, {tasks} tasks per device "
        f"(runtime.memory_plan={mode}) ..."
    )
    try:
        chosen = plan_memory(
            lambda gradient, chunk: training_step_estimate(
                exp, exp.learner_for(gradient, None if chunk == tasks else chunk), skip
            ),
            gradient_ladder(config, mode),
            tasks,
            budget,
            log=lambda line: say(f"metajax train: memory plan: {line}"),
        )
    except MemoryError as err:
        raise MemoryError(
            f"runtime.memory_plan={mode}: {err}. Raise runtime.memory_budget_gb if the device has more, or use "
            "first-order gradients (algorithm fomaml), iMAML (memory flat in the inner steps), fewer inner steps or "
            "a smaller model."
        ) from None
    except ValueError as err:
        raise ValueError(
            f"runtime.memory_plan={mode}: {err}; set data.task_chunk and inner.gradient yourself instead."
        ) from None
    say(f"metajax train: memory plan chosen: {chosen.summary()}")
    release_host_memory()
    return chosen, mode, requested


def _run(config: Any, run_dir: Path, progress: bool | None) -> dict[str, Any]:
    check_resume(config, run_dir)
    exp = build(config)
    planned = memory_plan(exp, run_dir)
    if planned is not None:  # the same data, the learners the plan chose
        exp = build(planned_config(config, planned[0]), reuse=exp)
    if config.train.get("init"):  # a backbone that does not fit this model is refused before anything is written
        initial_run_params(exp, jax.random.PRNGKey(0), config.train.init)
    # read back at start by a resumed run (and by the other processes of this one)
    write_atomic(run_dir / "config.json", config.to_json_best_effort(indent=1))
    write_atomic(run_dir / "versions.json", json.dumps(versions(), indent=1))
    record = None if planned is None else plan_record(*planned)
    if record is not None:
        write_atomic(run_dir / PLAN_FILE, strict_json(record))
    meta_params, train_info = meta_train(exp, run_dir, progress)
    aside = set_aside_if_damaged(run_dir / "meta_params.msgpack")  # a rerun of a finished run writes it again
    if aside is not None:
        say(f"metajax train: meta_params.msgpack was damaged (its SHA-256 differs); set aside as {aside}.")
    save_params(run_dir / "meta_params.msgpack", meta_params)
    say(f"evaluating on {config.eval.num_tasks} held-out tasks ...")
    t = time.perf_counter()
    evals = {"final": exp.evaluate(meta_params, run_dir, "final", progress=progress)}
    if train_info.get("best_step") == train_info["steps"]:
        # the best validation score came at the last step: best.msgpack holds the final parameters
        for path in run_dir.glob("eval_final.*"):
            shutil.copyfile(path, path.with_name("eval_best" + path.suffix))
        evals["best"] = evals["final"]
    elif "best_step" in train_info:
        evals["best"] = exp.evaluate(load_best(run_dir, meta_params, repair=True), run_dir, "best", progress=progress)
    summary = {
        "algorithm": exp.learner.name,
        **train_info,
        "eval_wall_s": round(time.perf_counter() - t, 2),
        **({"memory_plan": record} if record is not None else {}),
        **(
            {"results": evals["final"]["results"]}
            if len(evals) == 1
            else {"results": {k: v["results"] for k, v in evals.items()}}
        ),
    }
    write_atomic(run_dir / "summary.json", strict_json(summary))
    from metajax._src.app.plots import plot_learning_curves  # matplotlib: imported when a run gets this far

    plot_learning_curves(run_dir)
    for tag, ev in evals.items():
        if len(evals) > 1:
            print(f"{tag} meta-parameters" + (f" (step {train_info['best_step']})" if tag == "best" else ""))
        print(ev["table"])
    return summary
