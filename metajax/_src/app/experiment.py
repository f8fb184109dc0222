"""Experiments built from a config: the model, the learner, task sampling and the evaluation protocol.

:func:`build` is where a config becomes library objects: everything it builds takes explicit arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from metajax._src.app.algorithms import algorithm_spec, build_learner
from metajax._src.app.configs import with_gradient
from metajax._src.app.experiment_base import (
    NULL_NOTE,
    Experiment,
    build_outer_opt,
)
from metajax._src.app.fewshot import FewShot
from metajax._src.app.progress import say
from metajax._src.app.runtime import Runtime, resolve_runtime
from metajax._src.base import check_positive_int
from metajax._src.data import sinusoid
from metajax._src.evaluation import adaptation_curves, joint_training, markdown_table, plain_adapter, summarize
from metajax._src.files import strict_json
from metajax._src.inner import make_inner_opt
from metajax._src.losses import mse_loss
from metajax._src.models import check_compute_dtype, mlp

RL_TASKS = ("navigation2d", "cartpole", "bandit")
"""Meta-reinforcement-learning tasks (:mod:`metajax._src.app.rl`)."""
TASKS = ("sinusoid", "omniglot", "miniimagenet", "tiered_imagenet", "cifar_fs", "fc100", "cub", *RL_TASKS)


def build(config: Any, runtime: Runtime | None = None, reuse: Experiment | None = None) -> Experiment:
    """Validate a config and build the experiment (data loaded, nothing compiled yet).

    ``runtime``: where it executes (default: resolved from the config's ``runtime`` section). ``reuse``: an
    experiment built from a config with the same data settings (the memory planner's: another task chunk or
    gradient strategy) whose loaded data this one takes instead of reading it again.
    """
    if config.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {config.task!r}.")
    algorithm_spec(config.algorithm)  # a clear error for an unknown name
    check_positive_int("train.num_steps", config.train.num_steps)
    check_positive_int("train.steps_per_call", config.train.steps_per_call)
    for name in ("checkpoint_every", "eval_every"):
        check_positive_int(f"train.{name}", config.train.get(name, 0), minimum=0)  # 0: never (only at the end)
    nan_policy = config.train.get("nan_policy", "stop")
    if nan_policy not in ("stop", "skip"):
        raise ValueError(f"train.nan_policy must be 'stop' or 'skip', got {nan_policy!r}.")
    val_tasks = check_positive_int("train.val_tasks", config.train.get("val_tasks", 0), minimum=0)
    if val_tasks == 0 and config.train.get("eval_every", 0) and config.task not in ("sinusoid", *RL_TASKS):
        raise ValueError(
            f"train.val_tasks must be >= 1 to validate every train.eval_every={config.train.eval_every} steps, got 0; "
            "set train.eval_every=0 to train without validation (no best.msgpack)."
        )
    runtime = resolve_runtime(config) if runtime is None else runtime
    if config.task in RL_TASKS:
        from metajax._src.app.rl import build_rl

        return build_rl(config, runtime)
    outer_opt = build_outer_opt(config.outer, config.train.num_steps)
    if config.task == "sinusoid":
        return build_sinusoid(config, outer_opt, runtime)
    return build_fewshot(config, outer_opt, runtime, None if reuse is None else reuse.loaded)


def build_sinusoid(config: Any, outer_opt: optax.GradientTransformation, runtime: Runtime) -> Experiment:
    """Sinusoid regression (Finn et al. 2017, section 5.1): the MLP, its tasks and the adaptation-curve protocol."""
    d = config.data
    if algorithm_spec(config.algorithm).stateful:
        raise ValueError(
            f"algorithm {config.algorithm!r} trains a model with state; the sinusoid's MLP has none. It runs on the "
            "few-shot tasks (omniglot, miniimagenet, ...) from the command line; for the sinusoid use "
            "metajax.maml_plus_plus(loss_fn, None, num_inner_steps, stateful=False) from Python."
        )
    for name in ("shots", "query_shots"):
        check_positive_int(f"data.{name}", d[name])
    check_sinusoid_eval(config.eval)
    for i, width in enumerate(config.model.hidden):
        check_positive_int(f"model.hidden[{i}]", width)
    compute_dtype = check_compute_dtype(config.model.get("compute_dtype", "float32"))
    model = mlp(hidden=tuple(config.model.hidden), compute_dtype=compute_dtype)
    loss_fn = mse_loss(model.apply)
    spec = sinusoid.task_spec(d.shots, d.query_shots)

    def learner_for(gradient, task_chunk):
        inner = with_gradient(config.inner, gradient)
        return build_learner(config.algorithm, loss_fn, inner, task_spec=spec, task_chunk=task_chunk)

    learner = learner_for(None, runtime.task_chunk)
    inner_opt = make_inner_opt(config.inner.opt, config.inner.lr)

    def sample_tasks(key):
        return sinusoid.sample_tasks(key, d.meta_batch_size, d.shots, d.query_shots)

    def evaluate(meta_params, run_dir, tag="final", progress=None):
        del tag  # one evaluation per run: there is no validation checkpoint
        del progress  # the sinusoid evaluation takes seconds: no bar
        return evaluate_sinusoid(exp, meta_params, run_dir, mesh=runtime.eval_mesh)

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
        runtime=runtime,
        learner_for=learner_for,
    )
    return exp


def build_fewshot(
    config: Any, outer_opt: optax.GradientTransformation, runtime: Runtime, loaded: Any = None
) -> Experiment:
    """Few-shot classification (Omniglot, Mini-ImageNet, ...): episodes, backbone, validation and test protocol.

    ``loaded``: the data another experiment of the same data settings loaded (its ``loaded``).
    """
    fs = FewShot(
        config,
        lambda loss_fn, algorithm=None, inner=None, **kw: build_learner(
            algorithm or config.algorithm, loss_fn, inner or config.inner, **{"task_chunk": runtime.task_chunk, **kw}
        ),
        runtime,
        loaded,
    )
    return Experiment(
        config,
        fs.model,
        fs.learner,
        outer_opt,
        fs.loss_fn,
        fs.sample_train,
        make_inner_opt(config.inner.opt, config.inner.lr),
        evaluate=fs.evaluate,
        data=(fs.images["train"],) if fs.host is None else (),
        validate=fs.validate,
        held_out=lambda num, seed: fs.episodes("test", num, seed),
        has_aux=True,
        runtime=runtime,
        host_data=fs.host,
        learner_for=fs.train_learner,
        loaded=fs.loaded,
    )


def check_sinusoid_eval(ev: Any) -> None:
    """The sinusoid's ``eval`` settings, checked when the experiment is built (before any training): ``ValueError``
    naming the key."""
    for name in ("num_tasks", "query_shots", "max_steps", "num_examples"):
        check_positive_int(f"eval.{name}", ev[name], minimum=0 if name == "num_examples" else 1)
    check_positive_int("eval.pretrain_steps", ev.pretrain_steps, minimum=0)
    check_positive_int("eval.seed", ev.seed, minimum=0)
    diverged = ev.diverged_above
    if isinstance(diverged, bool) or not isinstance(diverged, (int, float)) or not diverged > 0:
        raise ValueError(f"eval.diverged_above must be a number > 0 (an MSE; inf: never), got {diverged!r}.")
    steps = ev.report_steps
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__len__") or not len(steps):
        raise ValueError(f"eval.report_steps must be a non-empty list of inner-step counts, got {steps!r}.")
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= ev.max_steps:
            raise ValueError(
                f"eval.report_steps must be step counts in [0, eval.max_steps={ev.max_steps}], got {list(steps)!r}."
            )


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
    (run_dir / "eval.json").write_text(strict_json({"num_tasks": ev.num_tasks, "results": results, "note": NULL_NOTE}))
    table = markdown_table(results)
    (run_dir / "eval.md").write_text(
        f"Sinusoid, {ev.num_tasks} held-out tasks, K={d.shots} support / {ev.query_shots} query points, inner "
        f"{cfg.inner.opt} lr={cfg.inner.lr}; query MSE after n inner steps. Diverged: non-finite or MSE > "
        f"{ev.diverged_above}.\n\n{table}"
    )
    np.savez_compressed(run_dir / "curves.npz", **curves)
    try:
        from metajax._src.app.plots import plot_sinusoid

        plot_sinusoid(run_dir / "adaptation.png", exp, inits, tasks, tp, curves, ev.num_examples, ev.diverged_above)
    except ImportError as err:  # matplotlib is a dependency, but do not lose the numbers over a plot
        say(f"plot skipped: {err}")
    return {"results": results, "table": table}
