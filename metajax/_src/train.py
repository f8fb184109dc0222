"""Meta-training runs driven by a config: build, train with progress, evaluate, plot.

Only this module and the CLI read configs; the library functions take explicit
arguments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import metajax as mj
from metajax._src.data import sinusoid
from metajax._src.evaluation import adaptation_curves, joint_training, markdown_table, plain_adapter, summarize
from metajax._src.files import write_atomic
from metajax._src.learner import resolve_task_chunk
from metajax._src.models import Model, mlp, mse_loss

ALGORITHMS = ("maml", "fomaml", "reptile", "meta_sgd", "anil", "imaml")


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, built from a config.

    ``sample_tasks(key, *data)`` draws a training task batch (``data`` holds
    device arrays passed into the compiled loop); ``evaluate(meta_params,
    run_dir, tag, progress=None)`` writes and returns the evaluation
    (``progress`` as for training); ``validate(meta_params)`` (optional)
    returns a score to maximise for best-checkpoint selection.
    """

    config: Any
    model: Model
    learner: mj.MetaLearner
    outer_opt: optax.GradientTransformation
    loss_fn: Callable
    sample_tasks: Callable[..., mj.Task]
    inner_opt: optax.GradientTransformation
    evaluate: Callable[..., dict[str, Any]]
    data: tuple = ()
    validate: Callable[..., float] | None = None
    """``validate(meta_params, on_chunk=None)``; ``on_chunk(done, total)`` reports its progress (tasks)."""
    held_out: Callable[[int, int], mj.Task] | None = None
    """``held_out(num_tasks, seed)``: test tasks (sinusoid: fresh tasks; few-shot: test-split episodes)."""
    has_aux: bool = False
    eval_mesh: Any = None
    """The mesh evaluation splits its tasks over (:func:`eval_devices`; ``None``: one device)."""


def build_learner(
    algorithm: str,
    loss_fn: Callable,
    inner: Any,
    task_spec: mj.Task | None = None,
    has_aux: bool = False,
    query_loss_fn: Callable | None = None,
    task_chunk: int | None = None,
) -> mj.MetaLearner:
    """Build one of :data:`ALGORITHMS` from an ``inner`` config section."""
    common = {"has_aux": has_aux, "query_loss_fn": query_loss_fn, "task_spec": task_spec, "task_chunk": task_chunk}
    batch = {"inner_batch_size": inner.get("batch_size")}
    opt = inner.opt
    if opt == "adam" and inner.get("b1", 0.9) != 0.9:  # Reptile's inner Adam uses beta1 = 0
        mj._src.base.check_learning_rate("inner.lr", inner.lr)
        opt = mj.adam(inner.lr, b1=inner.b1)
    if algorithm == "maml":
        return mj.maml(loss_fn, opt, inner.steps, inner_lr=inner.lr, gradient=inner.gradient, **common, **batch)
    if algorithm == "fomaml":
        return mj.fomaml(loss_fn, opt, inner.steps, inner_lr=inner.lr, **common, **batch)
    if algorithm == "reptile":
        return mj.reptile(loss_fn, opt, inner.steps, inner_lr=inner.lr, **common, **batch)
    if algorithm == "meta_sgd":
        return mj.meta_sgd(
            loss_fn, inner.steps, init_lr=inner.lr, granularity=inner.granularity, gradient=inner.gradient, **common
        )
    if algorithm == "imaml":
        return mj.imaml(
            loss_fn,
            opt,
            inner.steps,
            inner_lr=inner.lr,
            lam=inner.get("lam", 1.0),
            cg_steps=inner.get("cg_steps", 5),
            **common,
            **batch,
        )
    if algorithm == "anil":
        return mj.anil(
            loss_fn, inner.head, opt, inner.steps, inner_lr=inner.lr, gradient=inner.gradient, **common, **batch
        )
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")


def build_outer_opt(outer: Any, num_steps: int) -> optax.GradientTransformation:
    """Outer optimiser; ``anneal`` decays the rate linearly to 0 (Reptile)."""
    mj._src.base.check_learning_rate("outer.lr", outer.lr)
    lr = optax.linear_schedule(outer.lr, 0.0, num_steps) if outer.anneal else outer.lr
    if outer.opt == "adam":
        return optax.adam(lr)
    if outer.opt == "sgd":
        return optax.sgd(lr)
    raise ValueError(f"outer.opt must be 'adam' or 'sgd', got {outer.opt!r}.")


TASKS = ("sinusoid", "omniglot", "miniimagenet")


def task_devices(config: Any) -> int | None:
    """How many devices the task batch is sharded over: ``runtime.devices``, or on the CPU backend with
    ``runtime.devices = 1``, the CPU task streams (``runtime.cpu_streams``) the host was split into.

    The split itself happens before JAX starts (``metajax train`` calls :func:`metajax.use_cpu_streams`);
    when it did not (``train.run`` called from Python without it), the run uses one device.
    """
    from metajax._src.sharding import planned_cpu_streams

    rt = config.get("runtime", {})
    n = planned_cpu_streams(rt, config.data.meta_batch_size)
    if n == 1:
        return rt.get("devices", 1)
    if jax.default_backend() != "cpu" or len(jax.devices()) < n:
        return 1
    return n


def eval_devices(config: Any) -> int | None:
    """How many devices evaluation and validation split their tasks over.

    ``runtime.devices`` when it is not 1 (``None`` / -1: all); on the CPU backend with ``runtime.cpu_streams``
    not 1, every CPU device (the streams the host was split into, see
    :func:`metajax._src.sharding.host_cpu_streams`); otherwise one. With ``runtime.distributed`` each process
    evaluates on its own first device (the evaluation tasks are host-local arrays).
    """
    from metajax._src.sharding import cpu_streams_apply

    rt = config.get("runtime", {})
    if rt.get("distributed", False):
        return 1
    if rt.get("devices", 1) != 1:
        return rt.get("devices", 1)
    if not cpu_streams_apply(rt) or jax.default_backend() != "cpu":
        return 1
    return len(jax.devices())


def build(config: Any) -> Experiment:
    """Validate a config and build the experiment (data loaded, nothing compiled yet)."""
    if config.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {config.task!r}.")
    if config.algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {config.algorithm!r}.")
    mj._src.base.check_positive_int("train.num_steps", config.train.num_steps)
    mj._src.base.check_positive_int("train.steps_per_call", config.train.steps_per_call)
    mj._src.base.check_positive_int("data.meta_batch_size", config.data.meta_batch_size)
    from metajax._src.sharding import check_divisible, make_mesh

    devices = task_devices(config)
    try:
        mesh = make_mesh(devices)
    except ValueError as err:
        raise ValueError(f"runtime.devices: {err}") from None
    check_divisible(config.data.meta_batch_size, mesh, argname="data.meta_batch_size")
    eval_mesh = make_mesh(eval_devices(config))
    outer_opt = build_outer_opt(config.outer, config.train.num_steps)
    if config.task == "sinusoid":
        return build_sinusoid(config, outer_opt, eval_mesh)
    return build_fewshot(config, outer_opt, eval_mesh)


def build_sinusoid(config: Any, outer_opt: optax.GradientTransformation, eval_mesh: Any = None) -> Experiment:
    d = config.data
    for name in ("shots", "query_shots"):
        mj._src.base.check_positive_int(f"data.{name}", d[name])
    model = mlp(hidden=tuple(config.model.hidden))
    loss_fn = mse_loss(model.apply)
    spec = sinusoid.task_spec(d.shots, d.query_shots)
    learner = build_learner(config.algorithm, loss_fn, config.inner, task_spec=spec)
    inner_opt = mj.make_inner_opt(config.inner.opt, config.inner.lr)

    def sample_tasks(key):
        return sinusoid.sample_tasks(key, d.meta_batch_size, d.shots, d.query_shots)

    def evaluate(meta_params, run_dir, tag="final", progress=None):
        del tag  # one evaluation per run: there is no validation checkpoint
        del progress  # the sinusoid evaluation takes seconds: no bar
        return evaluate_sinusoid(exp, meta_params, run_dir, mesh=eval_mesh)

    def held_out(num_tasks, seed):
        kp, kx = jax.random.split(jax.random.PRNGKey(seed))
        tp = sinusoid.sample_task_params(kp, num_tasks)
        return sinusoid.tasks_from_params(kx, tp, d.shots, config.eval.query_shots)

    exp = Experiment(
        config,
        model,
        learner,
        outer_opt,
        loss_fn,
        sample_tasks,
        inner_opt,
        evaluate=evaluate,
        held_out=held_out,
        eval_mesh=eval_mesh,
    )
    return exp


def build_fewshot(config: Any, outer_opt: optax.GradientTransformation, eval_mesh: Any = None) -> Experiment:
    from metajax._src.fewshot import FewShot

    chunk = config.data.task_chunk
    fs = FewShot(
        config,
        lambda loss_fn, **kw: build_learner(
            config.algorithm, loss_fn, config.inner, task_chunk=resolve_task_chunk(chunk), **kw
        ),
        mesh=eval_mesh,
    )
    return Experiment(
        config,
        fs.model,
        fs.learner,
        outer_opt,
        fs.loss_fn,
        fs.sample_train,
        mj.make_inner_opt(config.inner.opt, config.inner.lr),
        evaluate=fs.evaluate,
        data=(fs.images["train"],),
        validate=fs.validate,
        held_out=lambda num, seed: fs.episodes("test", num, seed),
        has_aux=True,
        eval_mesh=eval_mesh,
    )


class Progress:
    """A tqdm bar (rate, ETA, loss) on a terminal; plain log lines otherwise."""

    def __init__(
        self,
        total: int,
        enabled: bool | None = None,
        desc: str = "meta-train",
        every: int = 10,
        start: int = 0,
        unit: str = "it",
    ):
        self.total, self.desc, self.every, self.begin, self.unit = total, desc, every, start, unit
        # a terminal that reports no width (e.g. under `script`) gets plain lines: tqdm would draw nothing
        self.tty = sys.stderr.isatty() and shutil.get_terminal_size((0, 0)).columns > 0 if enabled is None else enabled
        self.start = time.perf_counter()
        self.calls = 0
        self.done = start
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, done: int, postfix: dict[str, float]) -> None:
        """``done`` of ``total`` finished (the bar advances by what finished since the last update)."""
        self.calls += 1
        n, self.done = done - self.done, done
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            return
        if self.calls % self.every and done < self.total:
            return
        elapsed = time.perf_counter() - self.start
        rate = (done - self.begin) / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        stats = " ".join(f"{k}={v:.4g}" for k, v in postfix.items())
        print(
            f"{self.desc} {done}/{self.total} {rate:.3g} {self.unit}/s eta {eta:.0f}s {stats}".rstrip(),
            file=sys.stderr,
            flush=True,
        )

    def note(self, text: str) -> None:
        """A status between updates (e.g. validation progress): the bar's postfix, or a log line."""
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        else:
            print(f"{self.desc} {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def versions() -> dict[str, str]:
    import flax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "metajax": mj.__version__,
        "platform": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"interrupted by signal {signum} at step {step}; a checkpoint was saved")
        self.step, self.signum = step, signum


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics lines up to ``step`` (the rest is recomputed bit-identically on resume)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):  # a line cut by a crash
            break
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(x + "\n" for x in keep))
    os.replace(tmp, path)


def _board(run_dir: Path, start: int) -> Any:
    """TensorBoard writer (tensorboardX) for ``run_dir/tensorboard``, or None if it is not installed.

    On a resume, ``purge_step`` makes TensorBoard drop the events a killed
    process wrote past the checkpoint, as the metrics file does.
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=start if start else None)


def _chunk(done: int, total: int, *periods: int) -> int:
    """Steps in the next compiled call: a function of ``done`` only, so a resumed run repeats the schedule."""
    n = total - done
    for p in periods:
        if p:
            n = min(n, p - done % p)
    return n


def meta_train(exp: Experiment, run_dir: Path, progress: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """Meta-train with checkpoints; resumes from ``run_dir/checkpoints`` when there are any.

    One JSON line per compiled chunk goes to ``run_dir/metrics.jsonl``. With
    ``exp.validate`` and ``train.eval_every > 0`` the meta-parameters are
    scored every ``eval_every`` steps and the best saved to ``best.msgpack``.
    A checkpoint (orbax) is written every ``train.checkpoint_every`` steps, at
    the end, and on SIGINT/SIGTERM (then :class:`Interrupted` is raised). Task
    batches are keyed by step and chunk boundaries depend only on the step, so
    a run resumed from any checkpoint ends with the same bits as an
    uninterrupted one (on the same machine and versions).
    """
    import signal

    from metajax._src.checkpoint import Checkpointer
    from metajax._src.compile_cache import cache_events
    from metajax._src.memory import check_fits, estimate, release_host_memory
    from metajax._src.sharding import make_mesh, replicate

    cfg = exp.config
    key = jax.random.PRNGKey(cfg.seed)
    init_key, train_key = jax.random.split(key)
    meta_params = exp.learner.init(exp.model.init(init_key))
    nan_policy = cfg.train.get("nan_policy", "stop")
    if nan_policy not in ("stop", "skip"):
        raise ValueError(f"train.nan_policy must be 'stop' or 'skip', got {nan_policy!r}.")
    mesh = make_mesh(task_devices(cfg))
    ms = mj.make_meta_step(exp.learner, exp.outer_opt, skip_nonfinite=nan_policy == "skip", mesh=mesh)
    state = ms.init(meta_params)
    total, chunk = cfg.train.num_steps, min(cfg.train.steps_per_call, cfg.train.num_steps)
    eval_every = cfg.train.get("eval_every", 0) if exp.validate is not None else 0
    ckpt_every = cfg.train.get("checkpoint_every", 0)
    ckpt = Checkpointer(run_dir / "checkpoints")
    done, best = 0, {"score": -math.inf, "step": None}
    restored = ckpt.restore_latest({"meta_params": meta_params, "state": state})
    if restored is not None:
        tree, record = restored
        meta_params, state, done, best = tree["meta_params"], tree["state"], record["step"], record["best"]
        best["score"] = -math.inf if best["score"] is None else best["score"]
        _truncate_metrics(run_dir / "metrics.jsonl", done)
        print(f"resuming from the checkpoint at step {done}", file=sys.stderr, flush=True)
    else:
        _truncate_metrics(run_dir / "metrics.jsonl", 0)
    # parameters, optimiser state and the device-resident data on every device of the mesh
    meta_params, state, data = replicate((meta_params, state, tuple(exp.data)), mesh)
    # one eager batch first: bad data (NaN inputs, labels out of range) fails here, before anything compiles
    mj.check_task_values(
        exp.sample_tasks(jax.random.fold_in(train_key, 0), *exp.data),
        "training tasks",
        num_classes=cfg.data.get("ways"),
    )
    runners: dict[int, Callable] = {}

    def runner(n):
        if n not in runners:
            jitted = jax.jit(mj.make_train_loop(ms, exp.sample_tasks, n), donate_argnums=(0, 1))
            # compile explicitly: XLA's memory analysis says whether the step fits before it runs
            t = time.perf_counter()
            with cache_events() as seen:
                compiled = jitted.lower(meta_params, state, train_key, *data).compile()
            how = f"compiled in {time.perf_counter() - t:.1f} s"
            if seen["hits"]:
                how = "loaded from the compilation cache"
            print(f"metajax train: the training step ({n} meta-steps per call) {how}", file=sys.stderr, flush=True)
            if cfg.train.get("memory_check", True):
                est, what = estimate(compiled), f"the training step ({n} meta-steps per call)"
                host_devices = sum(d.platform == "cpu" for d in mesh.devices.flat)
                if est is not None and host_devices > 1:  # CPU task streams: one copy per device in host RAM
                    est, what = est.times(host_devices), what + f" on {host_devices} CPU devices"
                report = check_fits(est, what)
                print(f"metajax train: {report}", file=sys.stderr, flush=True)
            runners[n] = compiled
            release_host_memory()  # the compiler's freed heap back to the OS
        return runners[n]

    def save():
        record_best = {"score": best["score"] if math.isfinite(best["score"]) else None, "step": best["step"]}
        ckpt.save(done, {"meta_params": meta_params, "state": state}, {"best": record_best})

    stop: dict[str, int] = {}
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[sig] = signal.signal(sig, lambda signum, frame: stop.setdefault("signum", signum))
        except ValueError:  # not the main thread: no signal handling
            pass
    bar = Progress(total, progress, start=done)
    main_process = jax.process_index() == 0  # multi-host: one process writes metrics and event files
    board = _board(run_dir, done) if main_process else None
    t0, compile_s = time.perf_counter(), None
    try:
        with open(run_dir / "metrics.jsonl" if main_process else os.devnull, "a") as f:
            while done < total:
                n = _chunk(done, min(total, done + chunk), eval_every, ckpt_every)
                t = time.perf_counter()
                meta_params, state, metrics = runner(n)(meta_params, state, train_key, *data)
                metrics = {
                    k: float(np.sum(v)) if k == "skipped" else float(np.mean(v))
                    for k, v in jax.device_get(metrics).items()
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
                    nan_policy == "stop" and not math.isfinite(metrics.get("query_loss", metrics["support_loss"]))
                ):
                    f.write(json.dumps(rec) + "\n")
                    last = max(ckpt.steps(), default=0)
                    raise FloatingPointError(
                        f"meta-training hit a non-finite value in steps {done - n + 1}..{done} "
                        f"(query_loss={metrics['query_loss']}); the last good checkpoint is step {last}. "
                        "train.nan_policy=skip skips such updates, --debug-nans finds the operation"
                    )
                if eval_every and (done % eval_every == 0 or done == total):
                    score = exp.validate(meta_params, on_chunk=lambda k, m: bar.note(f"validation {k}/{m} tasks"))
                    rec["val_accuracy"] = score
                    if score > best["score"]:
                        best = {"score": score, "step": done}
                        save_params(run_dir / "best.msgpack", meta_params)
                f.write(json.dumps(rec) + "\n")
                f.flush()
                if board is not None:
                    for k, v in rec.items():
                        if k != "step":
                            board.add_scalar(k, v, done)
                    board.flush()
                if (ckpt_every and done % ckpt_every == 0) or done == total or stop:
                    save()
                key = "query_loss" if "query_loss" in metrics else "support_loss"
                shown = {key: metrics[key]}
                if "query_accuracy" in metrics:
                    shown["acc"] = metrics["query_accuracy"]
                if "val_accuracy" in rec:
                    shown["val_acc"] = rec["val_accuracy"]
                bar.update(done, shown)
                if stop and done < total:
                    raise Interrupted(done, stop["signum"])
    finally:
        bar.close()
        ckpt.close()
        if board is not None:
            board.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
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
    return meta_params, info


def evaluate_sinusoid(exp: Experiment, meta_params: Any, run_dir: Path, mesh: Any = None) -> dict[str, Any]:
    """The adaptation-curve protocol against random and pretrained inits; table, JSON and plot.

    ``mesh``: split the held-out tasks over its devices (``None``: one device).
    """
    cfg, ev = exp.config, exp.config.eval
    key = jax.random.PRNGKey(ev.seed)
    kp, kx, kr, kj = jax.random.split(key, 4)
    tp = sinusoid.sample_task_params(kp, ev.num_tasks)
    tasks = sinusoid.tasks_from_params(kx, tp, cfg.data.shots, ev.query_shots)
    random_init = exp.model.init(kr)
    d = cfg.data
    pretrained = joint_training(
        exp.loss_fn,
        exp.model.init(kr),
        lambda k: sinusoid.sample_tasks(k, d.meta_batch_size, d.shots, d.query_shots),
        ev.pretrain_steps,
        kj,
    )
    baseline = plain_adapter(exp.loss_fn, exp.inner_opt)
    query_loss = exp.learner.query_loss
    inits = {
        exp.learner.name: (exp.learner.adapt, meta_params),
        "random": (baseline, random_init),
        "pretrained": (baseline, pretrained),
    }
    curves = {
        name: adaptation_curves(adapt, p, query_loss, tasks, ev.max_steps, mesh=mesh)
        for name, (adapt, p) in inits.items()
    }
    results = {name: summarize(c, ev.report_steps, ev.diverged_above) for name, c in curves.items()}
    (run_dir / "eval.json").write_text(json.dumps({"num_tasks": ev.num_tasks, "results": results}, indent=1))
    table = markdown_table(results)
    (run_dir / "eval.md").write_text(
        f"Sinusoid, {ev.num_tasks} held-out tasks, K={d.shots} support / {ev.query_shots} query points, inner "
        f"{cfg.inner.opt} lr={cfg.inner.lr}; query MSE after n inner steps. Diverged: non-finite or MSE > "
        f"{ev.diverged_above}.\n\n{table}"
    )
    np.savez_compressed(run_dir / "curves.npz", **curves)
    try:
        from metajax._src.plots import plot_sinusoid

        plot_sinusoid(run_dir / "adaptation.png", exp, inits, tasks, tp, curves, ev.num_examples, ev.diverged_above)
    except ImportError as err:  # matplotlib is a dependency, but do not lose the numbers over a plot
        print(f"plot skipped: {err}", file=sys.stderr)
    return {"results": results, "table": table}


def save_params(path: Path, tree: Any) -> None:
    from flax import serialization

    write_atomic(path, serialization.to_bytes(jax.device_get(tree)))


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


def _get(tree: dict, dotted: str) -> Any:
    for k in dotted.split("."):
        tree = tree.get(k) if isinstance(tree, dict) else None
    return tree


def resume_change(old: dict, new: dict, run_dir: str) -> list[str]:
    """The config keys that differ between a run directory's config and the one given to resume it.

    Raises ``ValueError`` unless the differences are ones a resumed run allows: ``train.num_steps`` (extends
    the run, unless the outer rate anneals over it) and ``runtime.*``.
    """
    diff = sorted(_diff_keys(old, new))
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


def load_params(path: Path, template: Any) -> Any:
    from flax import serialization

    return serialization.from_bytes(template, path.read_bytes())


def run(config: Any, run_dir: Path, progress: bool | None = None) -> dict[str, Any]:
    """Build, meta-train, save, evaluate. Returns the summary written to ``summary.json``."""
    resolved = config.to_json_best_effort(indent=1)
    previous = run_dir / "config.json"
    if (
        previous.is_file()
        and (run_dir / "checkpoints").is_dir()
        and json.loads(previous.read_text()) != json.loads(resolved)
    ):
        old, new = json.loads(previous.read_text()), json.loads(resolved)
        change = resume_change(old, new, str(run_dir))
        from metajax._src.checkpoint import Checkpointer

        ckpt = Checkpointer(run_dir / "checkpoints")
        reached = max(ckpt.steps(), default=0)
        ckpt.close()
        if config.train.num_steps < reached:
            raise ValueError(
                f"train.num_steps={config.train.num_steps}: the run in {str(run_dir)!r} already has a checkpoint at "
                f"step {reached}; give at least {reached} to continue it, or choose a new --run-dir."
            )
        if "train.num_steps" in change:
            print(
                f"metajax train: continuing the run in {run_dir} to {config.train.num_steps} meta-steps "
                f"(it was configured for {old['train']['num_steps']}; checkpoints up to step {reached})",
                file=sys.stderr,
                flush=True,
            )
        moved = [k for k in change if k.startswith(RESUMABLE_PREFIX)]
        if moved:
            print(
                "metajax train: resuming with other runtime settings ("
                + ", ".join(f"{k}: {_get(old, k)!r} -> {_get(new, k)!r}" for k in moved)
                + "); they decide where it executes, not what it computes (the float rounding may differ)",
                file=sys.stderr,
                flush=True,
            )
    exp = build(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(previous, resolved)  # read back at start by a resumed run (and by the other processes of this one)
    write_atomic(run_dir / "versions.json", json.dumps(versions(), indent=1))
    meta_params, train_info = meta_train(exp, run_dir, progress)
    save_params(run_dir / "meta_params.msgpack", meta_params)
    print(f"evaluating on {config.eval.num_tasks} held-out tasks ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    evals = {"final": exp.evaluate(meta_params, run_dir, "final", progress=progress)}
    if train_info.get("best_step") == train_info["steps"]:
        # the best validation score came at the last step: best.msgpack holds the final parameters
        for path in run_dir.glob("eval_final.*"):
            shutil.copyfile(path, path.with_name("eval_best" + path.suffix))
        evals["best"] = evals["final"]
    elif "best_step" in train_info:
        evals["best"] = exp.evaluate(
            load_params(run_dir / "best.msgpack", meta_params), run_dir, "best", progress=progress
        )
    summary = {
        "algorithm": exp.learner.name,
        **train_info,
        "eval_wall_s": round(time.perf_counter() - t, 2),
        **(
            {"results": evals["final"]["results"]}
            if len(evals) == 1
            else {"results": {k: v["results"] for k, v in evals.items()}}
        ),
    }
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=1))
    from metajax._src.plots import plot_learning_curves

    plot_learning_curves(run_dir)
    for tag, ev in evals.items():
        if len(evals) > 1:
            print(f"{tag} meta-parameters" + (f" (step {train_info['best_step']})" if tag == "best" else ""))
        print(ev["table"])
    return summary
