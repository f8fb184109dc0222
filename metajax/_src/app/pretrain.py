"""``metajax pretrain``: supervised pre-training of a few-shot config's backbone, and ``metajax train --init``.

:func:`run` trains the backbone of a few-shot config (``model``) with a linear classifier over every meta-training
class: cross-entropy, an Optax optimiser (``pretrain.opt``, ``pretrain.lr``, cosine-annealed), batches of
``pretrain.batch_size`` images drawn uniformly from the training split, with ``pretrain.augment``. Every
``pretrain.eval_every`` steps the backbone is scored as a meta-initialisation: the config's own algorithm
adapts it (with a freshly initialised head, the one ``metajax train --init`` will use) on the validation
episodes, and the best backbone is kept. It checkpoints and resumes as meta-training does. The run directory
gets ``backbone.msgpack`` (the selected backbone, no head), ``pretrained.msgpack`` (the final classifier),
``best.msgpack``, ``metrics.jsonl``, ``learning.png`` and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from metajax._src.app.checkpoint import Checkpointer, restore_best, save_checkpoint
from metajax._src.app.experiment import build
from metajax._src.app.experiment_base import split_model_init
from metajax._src.app.fewshot import build_model
from metajax._src.app.progress import Progress, say
from metajax._src.app.rundir import (
    BACKBONE_FILE,
    RunLock,
    check_run_directory,
    save_params,
    truncate_metrics,
    versions,
)
from metajax._src.app.runparams import join_run_params
from metajax._src.app.train import (
    Interrupted,
    JsonLinesSink,
    _chunk,
    catch_stop_signals,
    check_resume,
)
from metajax._src.base import check_positive_int
from metajax._src.data.tieredimagenet import tiered_classification_sampler
from metajax._src.files import strict_json, write_atomic
from metajax._src.inner import OPTIMIZERS
from metajax._src.inner import make_optimizer as optimizer
from metajax._src.models import check_compute_dtype
from metajax._src.pretrain import (
    AUGMENTATIONS,
    backbone_of,
    classification_batch,
    classification_loss,
    with_backbone,
)

SCHEDULES = ("cosine", "constant")


def default_settings(task: str, smoke: bool = False) -> ConfigDict:
    """The ``pretrain`` section a config gets when it has none: Adam 1e-3 cosine-annealed, 128 images per batch;
    Omniglot 3,000 steps without augmentation (its rotations are classes already), the colour sets 20,000 steps
    with flips and crops. ``smoke``: 20 steps of 16 images."""
    colour = task != "omniglot"
    s = ConfigDict(
        {
            "steps": 20_000 if colour else 3_000,
            "batch_size": 128,
            "opt": "adam",
            "lr": 1e-3,
            "weight_decay": 5e-4 if colour else 0.0,
            "schedule": "cosine",
            "augment": "flip_crop" if colour else "none",
            "eval_every": 1_000 if colour else 500,
            "checkpoint_every": 500,
            "steps_per_call": 50,
        }
    )
    if smoke:
        s.update({"steps": 20, "batch_size": 16, "eval_every": 10, "checkpoint_every": 10, "steps_per_call": 5})
    return s


def with_pretrain_settings(config: Any, smoke: bool = False) -> Any:
    """``config`` with a ``pretrain`` section (:func:`default_settings` for the keys it does not set)."""
    if config.get("task") in (None, "sinusoid"):
        raise ValueError(
            f"metajax pretrain trains a few-shot classification backbone; config task {config.get('task')!r} has "
            "no classes to pre-train on."
        )
    settings = default_settings(config.task, smoke)
    settings.update(config.get("pretrain", {}))
    config.pretrain = settings
    return config


def check_settings(config: Any) -> None:
    """Every ``pretrain`` setting, checked before anything loads or compiles."""
    p = config.pretrain
    for name in ("steps", "batch_size", "steps_per_call"):
        check_positive_int(f"pretrain.{name}", p[name])
    for name in ("eval_every", "checkpoint_every"):
        check_positive_int(f"pretrain.{name}", p[name], minimum=0)
    for name, allowed in (("opt", OPTIMIZERS), ("schedule", SCHEDULES), ("augment", AUGMENTATIONS)):
        if p[name] not in allowed:
            raise ValueError(f"pretrain.{name} must be one of {allowed}, got {p[name]!r}.")
    if isinstance(p.lr, bool) or not isinstance(p.lr, int | float) or not p.lr > 0:
        raise ValueError(f"pretrain.lr must be a number > 0, got {p.lr!r}.")
    wd = p.weight_decay
    if isinstance(wd, bool) or not isinstance(wd, int | float) or not (wd >= 0 and math.isfinite(wd)):
        raise ValueError(f"pretrain.weight_decay must be a finite number >= 0, got {wd!r}.")


def make_optimizer(p: Any) -> optax.GradientTransformation:
    """The pre-training optimiser of a ``pretrain`` section: the named one, cosine-annealed, with weight decay."""
    lr = optax.cosine_decay_schedule(p.lr, p.steps) if p.schedule == "cosine" else p.lr
    base = optimizer(p.opt, lr, argnames=("pretrain.opt", "pretrain.lr"))
    return optax.chain(optax.add_decayed_weights(p.weight_decay), base) if p.weight_decay else base


def run(config: Any, run_dir: Path, progress: bool | None = None) -> dict[str, Any]:
    """Pre-train (resuming from ``run_dir``'s checkpoints), select the backbone, write the run directory.

    Returns the summary written to ``summary.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir, jax.process_index()):
        check_run_directory(run_dir)
        return _run(config, run_dir, progress)


def _run(config: Any, run_dir: Path, progress: bool | None) -> dict[str, Any]:
    check_settings(config)
    check_resume(config, run_dir)
    p = config.pretrain
    exp = build(config)
    if exp.host_data is None:
        images = exp.data[0]  # the training split, on the device: (classes, examples, H, W[, C]) uint8
        classes = int(images.shape[0])
    else:  # kept on the host (tiered-ImageNet): each batch drawn there through a host callback
        images = tiered_classification_sampler(exp.host_data["train"], p.batch_size)
        classes = exp.host_data["train"].num_classes
    size, channels = exp.model.input_shape[0], exp.model.input_shape[-1]
    compute_dtype = check_compute_dtype(config.model.get("compute_dtype", "float32"))
    classifier, _ = build_model(config, classes, size, channels, compute_dtype, stateful=False)
    write_atomic(run_dir / "config.json", config.to_json_best_effort(indent=1))
    write_atomic(run_dir / "versions.json", json.dumps(versions(), indent=1))

    key = jax.random.PRNGKey(config.seed)
    meta_init_key = jax.random.split(key)[0]  # the key metajax train draws its initial parameters with
    head_params = exp.model.init(meta_init_key)  # the fresh few-shot head validation adapts (as --init will)
    init_key, train_key = jax.random.split(jax.random.fold_in(key, 2))  # keys of their own for pre-training
    params = classifier.init(init_key)
    opt = make_optimizer(p)
    opt_state = opt.init(params)
    loss_fn = classification_loss(classifier.apply)

    def as_meta_params(classifier_params):
        # MAML++: the backbone at every inner step, fresh running statistics
        fresh, state = split_model_init(exp, head_params)
        return join_run_params(exp.learner.init(with_backbone(fresh, backbone_of(classifier_params))), state)

    def loop(n):
        def body(carry, i):
            params, opt_state = carry
            x, y = classification_batch(jax.random.fold_in(train_key, i), images, p.batch_size, p.augment)
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), {
                "loss": loss,
                "accuracy": aux["accuracy"],
                "grad_norm": optax.tree.norm(grads),
            }

        def run_n(params, opt_state, start):
            return jax.lax.scan(body, (params, opt_state), start + jnp.arange(n))

        return jax.jit(run_n, donate_argnums=(0, 1))

    total = p.steps
    eval_every = p.eval_every if config.train.get("val_tasks", 0) else 0
    ckpt_every = p.checkpoint_every
    ckpt = Checkpointer(run_dir / "checkpoints")
    done, best, best_host = 0, {"score": -math.inf, "step": None}, None
    restored = ckpt.restore_latest({"params": params, "opt_state": opt_state})
    if restored is not None:
        tree, record = restored
        params, opt_state, done = tree["params"], tree["opt_state"], record["step"]
        best, best_host = restore_best(ckpt, record, params, run_dir)
        say(f"resuming from the checkpoint at step {done}")
    truncate_metrics(run_dir / "metrics.jsonl", done)
    runners: dict[int, Any] = {}

    def save():
        save_checkpoint(ckpt, done, {"params": params, "opt_state": opt_state}, best, best_host)

    stop, restore_signals = catch_stop_signals()
    say(
        f"metajax pretrain: {classes} classes, {size}x{size}x{channels}, {p.steps} steps of {p.batch_size} images, "
        f"{p.opt} lr={p.lr} ({p.schedule}), weight decay {p.weight_decay}, augment {p.augment}"
    )
    bar = Progress(total, progress, start=done, desc="pretrain", unit="step")
    sink = JsonLinesSink(run_dir / "metrics.jsonl")
    t0, metrics = time.perf_counter(), {}
    try:
        while done < total:
            n = _chunk(done, min(total, done + p.steps_per_call), eval_every, ckpt_every)
            if n not in runners:
                runners[n] = loop(n)
            t = time.perf_counter()
            (params, opt_state), metrics = runners[n](params, opt_state, jnp.int32(done))
            metrics = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
            dt = time.perf_counter() - t
            done += n
            rec = {"step": done, "time_s": round(time.perf_counter() - t0, 3), "it_per_s": round(n / dt, 3), **metrics}
            if not math.isfinite(metrics["loss"]):
                sink.write(rec)
                raise FloatingPointError(
                    f"pre-training hit a non-finite loss in steps {done - n + 1}..{done}; lower pretrain.lr"
                )
            if eval_every and (done % eval_every == 0 or done == total):
                score = exp.validate(
                    as_meta_params(params), on_chunk=lambda k, m: bar.note(f"validation {k}/{m} tasks")
                )
                rec["val_accuracy"] = score
                if score > best["score"]:
                    best = {"score": score, "step": done}
                    best_host = jax.device_get(params)
                    save_params(run_dir / "best.msgpack", best_host)
            sink.write(rec)
            if (ckpt_every and done % ckpt_every == 0) or done == total or stop:
                save()
            shown = {"loss": metrics["loss"], "acc": metrics["accuracy"]}
            if "val_accuracy" in rec:
                shown["val_acc"] = rec["val_accuracy"]
            bar.update(done, shown)
            if stop and done < total:
                raise Interrupted(done, stop["signum"])
    finally:
        bar.close()
        ckpt.close()
        sink.close()
        restore_signals()
    final = jax.device_get(params)
    save_params(run_dir / "pretrained.msgpack", final)
    chosen, chosen_step = (best_host, best["step"]) if best_host is not None else (final, total)
    save_params(run_dir / BACKBONE_FILE, backbone_of(chosen))
    summary = {
        "kind": "pretrain",
        "classes": classes,
        "steps": total,
        "train_wall_s": round(time.perf_counter() - t0, 2),
        "final_train_loss": metrics.get("loss"),
        "backbone_step": chosen_step,
        "best_val_accuracy": best["score"] if math.isfinite(best["score"]) else None,
        "validation": f"{config.algorithm} adaptation ({config.inner.get('steps')} inner steps) of the backbone with "
        f"a fresh head on {config.train.get('val_tasks', 0)} validation episodes, transductive batch norm",
        "backend": jax.default_backend(),
    }
    write_atomic(run_dir / "summary.json", strict_json(summary))
    from metajax._src.app.plots import plot_learning_curves

    plot_learning_curves(run_dir)
    return summary
