"""The ``metajax`` command line (also ``python -m metajax``): parsing, and one function per command."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

from metajax._src.app.configs import DEFAULT_CONFIG, apply_overrides, available_configs, load_config
from metajax._src.app.launch import pin_cpu_threads, split_cpu_streams, use_compile_cache
from metajax._src.app.progress import say
from metajax._src.files import check_writable, strict_json


def cmd_train(args: argparse.Namespace) -> int:
    config = apply_overrides(load_config(args.config, args.smoke), args.set or [])
    if args.data_dir is not None:
        if "data_dir" not in config.get("data", {}):
            raise ValueError(f"--data-dir: config {args.config!r} reads no data directory.")
        config.data.data_dir = args.data_dir
    if args.init is not None:
        from metajax._src.app.rundir import check_init_run

        check_init_run(args.init, "--init")
        if config.get("task") in (None, "sinusoid"):
            raise ValueError(
                f"--init: a pre-trained backbone initialises the few-shot configs; {args.config!r} is "
                f"{config.algorithm!r} on {config.get('task')!r}."
            )
        config.train.init = str(Path(args.init).resolve())
    return _start(args, config, "train", _train)


def _start(args: argparse.Namespace, config: Any, prefix: str, body: Any) -> int:
    """Make (or reuse) the run directory of ``metajax train`` / ``pretrain`` and run ``body`` in it."""
    name = Path(args.config).stem
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    default = Path("runs") / (f"{name}-{stamp}" if prefix == "train" else f"{prefix}-{name}-{stamp}")
    run_dir = Path(args.run_dir) if args.run_dir else default
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        check_writable(run_dir)
    except OSError as err:
        raise ValueError(
            f"--run-dir: cannot write to {str(run_dir)!r}: {err.strerror}. Choose a writable directory."
        ) from err
    try:
        return body(args, config, run_dir)
    finally:
        if created:
            _remove_if_unused(run_dir)


def _remove_if_unused(run_dir: Path) -> None:
    """Remove a run directory this command created when the run wrote nothing into it (it failed at start)."""
    from metajax._src.app.rundir import LOCK_NAME

    try:
        names = [p.name for p in run_dir.iterdir()]
        if all(n.startswith(LOCK_NAME) for n in names):
            for n in names:
                (run_dir / n).unlink()
            run_dir.rmdir()
    except OSError:
        pass  # another process wrote into it meanwhile, or it is gone: leave it


def _train(args: argparse.Namespace, config: Any, run_dir: Path) -> int:
    threads = config.get("runtime", {}).get("cpu_threads", 0)
    where = pin_cpu_threads(int(threads))
    where += split_cpu_streams(config)
    where += ", " + use_compile_cache(args.compile_cache)
    if config.get("runtime", {}).get("distributed", False):
        from metajax._src.sharding import initialize_distributed

        index, count = initialize_distributed()
        where += f", process {index} of {count}"
    from metajax._src.app import train  # imports jax's runtime only now, after pinning

    if args.debug_nans:
        import jax

        jax.config.update("jax_debug_nans", True)
    devices = config.get("runtime", {}).get("devices", 1)
    if devices != 1:
        where += f", {'all' if devices in (None, -1) else devices} devices"
    outer = config.get("outer", {}).get("opt")
    algorithm = f"{config.algorithm}-{outer}" if outer == "trpo" else config.algorithm  # meta-RL: MAML-TRPO
    exp_summary = f"{algorithm} on {config.task}, {config.train.num_steps} meta-steps, {where}"
    say(f"metajax train: {exp_summary} -> {run_dir}")
    progress = False if args.no_progress else None
    try:
        train.run(config, run_dir, progress=progress)
    except FloatingPointError as err:
        say(
            f"metajax train: {err}. Lower outer.lr or inner.lr; the metrics up to this point are in "
            f"{run_dir / 'metrics.jsonl'}."
        )
        return 1
    except train.Interrupted as err:
        say(f"metajax train: {err}. {resume_hint(args, run_dir)} to resume from step {err.step}.")
        return 128 + err.signum
    shown = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    say(f"wrote {run_dir}/: {', '.join(shown)}")
    return 0


def resume_hint(args: argparse.Namespace, run_dir: Path) -> str:
    """How to resume: the same command, with ``--run-dir`` when the directory was chosen by the command (a new
    one is chosen at every start)."""
    if getattr(args, "run_dir", None):
        return "Run the same command again"
    return f"Run the same command again with --run-dir {run_dir}"


def cmd_pretrain(args: argparse.Namespace) -> int:
    from metajax._src.app.pretrain import check_settings, with_pretrain_settings

    config = with_pretrain_settings(load_config(args.config, args.smoke), args.smoke)
    config = apply_overrides(config, args.set or [])
    if args.data_dir is not None:
        config.data.data_dir = args.data_dir
    check_settings(config)  # before any data loads
    return _start(args, config, "pretrain", _pretrain)


def _pretrain(args: argparse.Namespace, config: Any, run_dir: Path) -> int:
    where = pin_cpu_threads(int(config.get("runtime", {}).get("cpu_threads", 0)))
    where += ", " + use_compile_cache(args.compile_cache)
    from metajax._src.app import pretrain, train

    p = config.pretrain
    say(
        f"metajax pretrain: the {config.model.get('name', 'conv4')} backbone of {args.config} on every {config.task} "
        f"training class, {p.steps} steps, {where} -> {run_dir}"
    )
    try:
        summary = pretrain.run(config, run_dir, progress=False if args.no_progress else None)
    except FloatingPointError as err:
        say(f"metajax pretrain: {err}; the metrics are in {run_dir / 'metrics.jsonl'}.")
        return 1
    except train.Interrupted as err:
        say(f"metajax pretrain: {err}. {resume_hint(args, run_dir)} to resume from step {err.step}.")
        return 128 + err.signum
    best = summary["best_val_accuracy"]
    chosen = f"step {summary['backbone_step']}" + ("" if best is None else f", validation accuracy {best:.4f}")
    say(
        f"wrote {run_dir}/backbone.msgpack ({chosen}); meta-train from it with: metajax train --config "
        f"{args.config} --init {run_dir}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    out = run_dir / "eval" if args.out is None else Path(args.out)
    try:  # before anything loads or compiles (a directory that is no run is refused by _load_run below)
        if (run_dir / "config.json").is_file():
            out.mkdir(parents=True, exist_ok=True)
            check_writable(out)
    except OSError as err:
        hint = " Pass --out DIR to write the evaluation elsewhere." if args.out is None else ""
        raise ValueError(f"--out: cannot write the evaluation to {str(out)!r}: {err.strerror or err}.{hint}") from None
    config, exp, meta_params, name, ckpt, where = _load_run(
        run_dir, args.checkpoint, args.set or [], args.data_dir, args.compile_cache
    )
    say(f"metajax eval: {ckpt} ({config.algorithm} on {config.task}), {where}")
    say(
        f"metajax eval: {config.eval.num_tasks} held-out tasks (the run's eval.num_tasks; "
        "--set eval.num_tasks=N to change it)"
    )
    ev = exp.evaluate(meta_params, out, name, progress=False if args.no_progress else None)
    print(ev["table"])
    say(f"wrote {out}/")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    if args.dataset == "omniglot":
        from metajax._src.data import omniglot

        root = omniglot.resolve_data_dir(args.data_dir)
        chars = omniglot.load_characters(root)
        for name, ci in chars.items():
            print(
                f"omniglot {name}: {len(ci.character)} characters x {ci.images.shape[1]} drawings = "
                f"{len(ci.character) * ci.images.shape[1]} images, {len(set(ci.alphabet))} alphabets, "
                f"{ci.images.shape[2]}x{ci.images.shape[3]} uint8 (from {root})"
            )
        return 0
    if args.dataset == "tiered_imagenet":
        from metajax._src.data.tieredimagenet import load_tieredimagenet

        for name, ri in load_tieredimagenet(args.data_dir, args.allow_pickle).items():
            cats = sorted(set(ri.category.tolist()) - {-1})
            print(
                f"tiered_imagenet {name}: {ri.num_classes} classes, {len(ri.images)} images ({ri.counts.min()} to "
                f"{ri.counts.max()} per class), {len(cats) if cats else 'unknown'} categories, "
                f"{ri.images.shape[1:]} uint8, memory-mapped from {Path(ri.images.filename).parent}"
            )
        return 0
    if args.dataset == "miniimagenet":
        from metajax._src.data.miniimagenet import load_miniimagenet

        parts = load_miniimagenet(args.data_dir, args.allow_pickle)
    else:
        from metajax._src.data.tfds_sets import load_tfds_fewshot

        parts = load_tfds_fewshot(args.dataset, args.data_dir)
    for name, ci in parts.items():
        print(
            f"{args.dataset} {name}: {ci.images.shape[0]} classes x {ci.images.shape[1]} images, "
            f"{ci.images.shape[2:]} uint8"
        )
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from metajax._src.data import omniglot
    from metajax._src.data.prepare import prepare_omniglot

    out = args.data_dir or str(omniglot.default_data_dir())
    res = prepare_omniglot(args.zips, out, args.format, log=lambda m: say(m))
    if args.format == "array_record":  # read it back the way training does
        return cmd_data_check(argparse.Namespace(dataset="omniglot", data_dir=out, allow_pickle=False))
    print(f"prepared {res['path']} ({args.format}; metajax reads array_record)")
    return 0


def cmd_grads(args: argparse.Namespace) -> int:

    import jax

    jax.config.update("jax_enable_x64", True)  # finite differences and closed forms need float64
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metajax._src import diagnostics as dg
    from metajax._src.data import sinusoid
    from metajax._src.losses import mse_loss
    from metajax._src.models import mlp

    alphas = [float(a) for a in args.alpha]
    ks = [int(k) for k in args.k]
    for a in alphas:
        if not a > 0 or a != a or a == float("inf"):
            raise ValueError(f"--alpha must be finite and > 0, got {a}.")
    for k in ks:
        if k < 1:
            raise ValueError(f"--k must be >= 1, got {k}.")
    out = Path(args.out or Path("runs") / f"grads-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    model = mlp(hidden=tuple(args.hidden))
    loss = mse_loss(model.apply)
    params = jax.tree_util.tree_map(lambda x: x.astype("float64"), model.init(jax.random.PRNGKey(args.seed)))
    if args.params:
        from metajax._src.app.rundir import load_params

        params = jax.tree_util.tree_map(lambda x: x.astype("float64"), load_params(Path(args.params), params))
    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(args.seed + 1), args.meta_batch_size, args.shots)
    one_d = dg.one_d_example()
    print("1-D example with a closed form: support w^4/4 - c_s w, query w^4/4 - c_q w, w = 0.7, alpha = 0.05")
    for key in ("exact", "first_order", "second_order"):
        print(f"  {key:13s} computed {one_d[key]: .15f}   closed form {one_d[key + '_closed_form']: .15f}")
    report = dg.compare_meta_gradients(
        loss,
        params,
        tasks,
        inner_opt=args.inner_opt,
        inner_lr=alphas[0],
        num_inner_steps=ks[0],
        finite_differences=args.fd,
    )
    table = dg.report_table(report)
    print(
        f"\nsinusoid MLP {tuple(args.hidden)}, {args.meta_batch_size} tasks, K={args.shots}, inner "
        f"{args.inner_opt} alpha={alphas[0]}, k={ks[0]}\n\n{table}"
    )
    result = {"one_d": one_d, "alpha": alphas[0], "k": ks[0], "layers": report["layers"], "overall": report["overall"]}
    if len(alphas) > 1 or len(ks) > 1:
        rows = dg.sweep(loss, params, tasks, alphas, ks, args.inner_opt)
        result["sweep"] = rows
        print("| k | alpha | cos(exact, FO) | ‖2nd-order‖ / ‖exact‖ | cos(exact, Reptile) |\n|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['k']} | {r['alpha']:g} | {r['cos_exact_first']:.4f} | "
                f"{r['norm_second_order'] / r['norm_exact']:.4g} | {r['cos_exact_reptile']:.4f} |"
            )
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for k in ks:
            sel = [r for r in rows if r["k"] == k]
            axes[0].plot([r["alpha"] for r in sel], [r["cos_exact_first"] for r in sel], "o-", label=f"k={k}")
            axes[1].plot(
                [r["alpha"] for r in sel], [r["norm_second_order"] / r["norm_exact"] for r in sel], "o-", label=f"k={k}"
            )
        for ax, title in zip(axes, ("cos(exact, first-order)", "‖exact − first-order‖ / ‖exact‖"), strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("inner learning rate α")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
        axes[1].set_yscale("log")
        fig.tight_layout()
        fig.savefig(out / "sweep.png", dpi=110)
        plt.close(fig)
    (out / "report.json").write_text(strict_json(result))
    (out / "report.md").write_text(table)
    say(f"wrote {out}/")
    return 0


def _load_run(
    run_dir: Path, checkpoint: str | None, overrides: list[str], data_dir: str | None, compile_cache: str | None
):
    """Config, experiment and meta-parameters of a finished (or checkpointed) run directory."""
    from ml_collections import ConfigDict

    from metajax._src.app.configs import distrust_stored_config
    from metajax._src.app.memplan import planned_config, read_plan
    from metajax._src.app.rundir import read_json

    if not (run_dir / "config.json").is_file():
        raise ValueError(f"RUN_DIR: {str(run_dir)!r} has no config.json; pass a directory written by metajax train.")
    config = distrust_stored_config(
        ConfigDict(read_json(run_dir / "config.json", "the run's configuration")), run_dir / "config.json"
    )
    if config.get("task") not in (None, "sinusoid") and "eval_tasks_per_call" not in config.get("runtime", {}):
        from metajax._src.app.runtime import DEFAULT_EVAL_TASKS_PER_CALL

        config.runtime.eval_tasks_per_call = DEFAULT_EVAL_TASKS_PER_CALL  # a run from before the setting existed
    if config.get("runtime", {}).get("memory_plan", "off") != "off" and (recorded := read_plan(run_dir, config)):
        config = planned_config(config, recorded[0])  # the task chunk the run's memory plan chose (--set overrides it)
    config = apply_overrides(config, overrides)
    if data_dir is not None and "data_dir" in config.get("data", {}):
        config.data.data_dir = data_dir
    # best.msgpack's digest beside it says the run had one even if the file itself was lost
    had_best = (run_dir / "best.msgpack").is_file() or (run_dir / "best.msgpack.sha256").is_file()
    name = checkpoint or ("best" if had_best else "meta_params")
    ckpt = run_dir / f"{name}.msgpack"
    if not ckpt.is_file() and not (name == "best" and had_best):
        found = sorted(p.name for p in run_dir.glob("*.msgpack"))
        raise ValueError(f"--checkpoint: {str(ckpt)!r} does not exist; this run has {found}.")
    where = pin_cpu_threads(int(config.get("runtime", {}).get("cpu_threads", 0)))
    where += split_cpu_streams(config)  # evaluation splits its tasks over the streams
    where += ", " + use_compile_cache(compile_cache)
    import jax

    from metajax._src.app.checkpoint import load_best
    from metajax._src.app.experiment import build
    from metajax._src.app.experiment_base import initial_run_params
    from metajax._src.app.rundir import load_params

    exp = build(config)
    template = initial_run_params(exp, jax.random.PRNGKey(0))
    try:
        remedy = (
            f"Use --checkpoint best, or run metajax train again with --run-dir {run_dir}: it restores the run's last "
            "checkpoint and writes meta_params.msgpack again (the damaged file is set aside)."
            if name == "meta_params"
            else None
        )
        meta_params = load_best(run_dir, template) if name == "best" else load_params(ckpt, template, remedy)
    except ValueError as err:
        raise ValueError(f"--checkpoint: {err}") from None
    return config, exp, meta_params, name, ckpt, where


def cmd_finetune(args: argparse.Namespace) -> int:
    import jax

    from metajax._src import finetune as ft
    from metajax._src.base import check_positive_int
    from metajax._src.evaluation import joint_training
    from metajax._src.inner import make_optimizer

    check_positive_int("--steps", args.steps)
    check_positive_int("--num-tasks", args.num_tasks)
    check_positive_int("--joint-steps", args.joint_steps)
    opt = make_optimizer(args.opt, args.lr, argnames=("--opt", "--lr"))
    run_dir = Path(args.run_dir)
    config, exp, meta_params, name, ckpt, where = _load_run(
        run_dir, args.checkpoint, args.set or [], args.data_dir, args.compile_cache
    )
    say(f"metajax finetune: {ckpt}, {where}")
    if exp.stateful:
        raise ValueError(
            f"metajax finetune compares plain fine-tuning inits of a model without state; {run_dir} is a "
            f"{config.algorithm!r} run (a model with running statistics). Use metajax eval for it."
        )
    key = jax.random.PRNGKey(args.seed)
    kr, kj = jax.random.split(key)
    random_init = exp.model.init(kr)
    from metajax._src.app.progress import Progress

    bar = Progress(args.joint_steps, False if args.no_progress else None, desc="joint-training baseline", every=1)
    joint = joint_training(
        exp.loss_fn,
        random_init,
        lambda k: exp.sample_tasks(k, *exp.data),
        args.joint_steps,
        kj,
        has_aux=exp.has_aux,
        steps_per_call=max(1, min(100, args.joint_steps // 20)),
        on_chunk=lambda done, n, loss: bar.update(done, {"loss": loss}),
    )
    bar.close()
    inits = {
        f"meta-trained ({exp.learner.name})": exp.learner.model_params(meta_params),
        "random": random_init,
        "jointly trained": joint,
    }
    tasks = exp.held_out(args.num_tasks, args.seed + 1)
    results = ft.fine_tune(
        exp.loss_fn,
        exp.learner.query_loss,
        inits,
        tasks,
        opt,
        args.steps,
        has_aux=exp.has_aux,
        task_chunk=exp.runtime.task_chunk,
        mesh=exp.eval_mesh,
    )
    steps = sorted({0, 1, 5, 10, 20, 50, args.steps} & set(range(args.steps + 1)))
    title = (
        f"Fine-tuning on {args.num_tasks} held-out {config.task} tasks from {ckpt.name}: {args.opt} lr={args.lr}, "
        f"{args.steps} steps on each task's support set; query metrics, mean ± 95% CI."
    )
    out = Path(args.out) if args.out else run_dir / "finetune"
    print(ft.write_report(out, title, results, steps))
    say(f"wrote {out}/ (finetune.md, finetune.json, finetune.png)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from metajax._src.app.plots import plot_curves_file, plot_learning_curves

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        raise ValueError(f"RUN_DIR: {str(run_dir)!r} has no metrics.jsonl; pass a directory written by metajax train.")
    say(f"wrote {plot_learning_curves(run_dir)}")
    if (run_dir / "curves.npz").is_file():
        say(f"wrote {plot_curves_file(run_dir / 'curves.npz')}")
    return 0


CACHE_HELP = (
    "directory of the persistent compilation cache, or 'off' (default: $METAJAX_COMPILE_CACHE, else "
    "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/metajax/xla/<cpu>); a cached step loads in well under a second "
    "instead of compiling"
)


def run_options() -> argparse.ArgumentParser:
    """The options every subcommand that builds an experiment takes (train, pretrain, eval, finetune)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set inner.lr=0.1 --set train.num_steps=1000 (repeatable)",
    )
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: the config's or run's data.data_dir, then $METAJAX_DATA_DIR, then "
        "~/tensorflow_datasets; $METAJAX_MINIIMAGENET_DIR and $METAJAX_TIEREDIMAGENET_DIR for those sets). "
        "Omniglot: a TFDS copy (omniglot/3.0.0) or the original zips; see `metajax data check --help`",
    )
    common.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    common.add_argument("--compile-cache", metavar="DIR", help=CACHE_HELP)
    return common


def build_parser() -> argparse.ArgumentParser:
    common = run_options()
    parser = argparse.ArgumentParser(
        prog="metajax",
        description="Gradient-based meta-learning (MAML, FOMAML, Reptile, Meta-SGD, ANIL, iMAML) from configs. "
        "`metajax train` with no arguments meta-trains MAML on the MAML paper's sinusoid regression "
        "(configs/sinusoid_maml.py), evaluates it against a random and a jointly trained initialisation and "
        "writes everything into a run directory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        parents=[common],
        help="meta-train from a config, then evaluate and plot",
        description="Meta-train from a config, evaluate on held-out tasks, write metrics.jsonl, "
        "eval.md/eval.json, adaptation.png and the meta-parameters into the run "
        "directory. To fit a memory budget, --set runtime.memory_plan=auto (and runtime.memory_budget_gb=GB, "
        "default 90% of the free memory) compiles candidate steps first and picks the task chunk and the exact "
        "gradient's rematerialisation; it says what it chose and records it in memory_plan.json.",
    )
    t.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"a config name (default {DEFAULT_CONFIG}; one of: {', '.join(available_configs())}), a path to a "
        ".py file with get_config(smoke), or a run's config.json (reruns that run's resolved configuration)",
    )
    t.add_argument("--smoke", action="store_true", help="the config's tiny version (seconds; for CI)")
    t.add_argument("--run-dir", help="output directory (default runs/CONFIG-TIMESTAMP)")
    t.add_argument(
        "--debug-nans",
        action="store_true",
        help="run with jax_debug_nans: stop at the first operation that makes a NaN (slow; for diagnosis)",
    )
    t.add_argument(
        "--init",
        metavar="RUN",
        help="start from the backbone of a metajax pretrain run directory (the head is initialised afresh; MAML++'s "
        "per-step batch norm starts from the backbone's at every step); few-shot configs",
    )
    t.set_defaults(func=cmd_train)
    pt = sub.add_parser(
        "pretrain",
        parents=[common],
        help="pre-train a few-shot config's backbone on all its training classes (for train --init)",
        description="Train the backbone of a few-shot config (its model section) with a linear classifier over "
        "every meta-training class: cross-entropy, batches drawn uniformly from the training split, an Optax "
        "optimiser cosine-annealed (settings under pretrain.*: steps, batch_size, opt adam|sgd|momentum, lr, "
        "weight_decay, schedule cosine|constant, augment none|flip_crop, eval_every, checkpoint_every). Every "
        "pretrain.eval_every steps the backbone is scored as the config's algorithm would start from it (a fresh "
        "head, its inner loop, the validation episodes) and the best is kept. Writes backbone.msgpack, "
        "pretrained.msgpack, metrics.jsonl, learning.png and summary.json; resumes from its checkpoints. Then: "
        "metajax train --config CONFIG --init RUN_DIR.",
    )
    pt.add_argument("--config", required=True, help="a few-shot config name (e.g. omniglot_5w1s_maml) or .py path")
    pt.add_argument("--smoke", action="store_true", help="the config's tiny version and 20 pre-training steps")
    pt.add_argument("--run-dir", help="output directory (default runs/pretrain-CONFIG-TIMESTAMP)")
    pt.set_defaults(func=cmd_pretrain)
    e = sub.add_parser(
        "eval",
        parents=[common],
        help="evaluate a trained run's meta-parameters on held-out tasks",
        description="Rebuild a run from RUN_DIR/config.json, load a checkpoint and evaluate it with the config's "
        "protocol (override with --set, e.g. --set eval.num_tasks=1000 --set eval.steps=10).",
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by metajax train")
    e.add_argument(
        "--checkpoint",
        help="best (best validation; the default when the run has one) or meta_params (the final parameters)",
    )
    e.add_argument("--out", help="output directory (default RUN_DIR/eval)")
    e.set_defaults(func=cmd_eval)
    g = sub.add_parser(
        "grads",
        help="compare exact, first-order and Reptile meta-gradients (and finite differences)",
        description="On a sinusoid task batch, compute the exact MAML meta-gradient, the FOMAML gradient, the "
        "Reptile direction and optionally finite differences, per layer and overall (norms, cosines, relative "
        "errors, the second-order term), in float64. Several --alpha/--k values add a sweep table and plot. "
        "Also prints a 1-D example (support loss w^4/4 - c_s w, query loss w^4/4 - c_q w) next to its closed form.",
    )
    g.add_argument(
        "--alpha",
        nargs="+",
        default=["0.01"],
        help="inner learning rate(s); the first is reported per layer (default 0.01)",
    )
    g.add_argument("--k", nargs="+", default=["1"], help="inner step count(s) (default 1)")
    g.add_argument("--inner-opt", default="sgd", choices=["sgd", "momentum", "adam"], help="inner optimiser")
    g.add_argument("--fd", action="store_true", help="also central finite differences (2 evaluations per parameter)")
    g.add_argument("--hidden", nargs="+", type=int, default=[40, 40], help="MLP hidden widths (default 40 40)")
    g.add_argument("--meta-batch-size", type=int, default=10, help="tasks in the batch (default 10)")
    g.add_argument("--shots", type=int, default=10, help="support and query points per task (default 10)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--params", help="a meta_params.msgpack of a sinusoid MAML run to evaluate at (default: random init)"
    )
    g.add_argument("--out", help="output directory (default runs/grads-TIMESTAMP)")
    g.set_defaults(func=cmd_grads)
    f = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune a meta-trained init with ordinary training and compare with random and joint inits",
        description="Meta-train, then fine-tune: fine-tune the run's meta-learned initialisation, a "
        "random one and a jointly trained one (multi-task training on the same task distribution, no adaptation) "
        "with the same Optax optimiser for --steps steps on each held-out task's support set, and report the "
        "query loss (and accuracy) per step: finetune.md, finetune.json, finetune.png.",
    )
    f.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by metajax train")
    f.add_argument("--checkpoint", help="best (default when present) or meta_params")
    f.add_argument("--opt", default="adam", help="sgd, momentum or adam (default adam)")
    f.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (default 1e-3)")
    f.add_argument("--steps", type=int, default=100, help="fine-tuning steps (default 100)")
    f.add_argument("--num-tasks", type=int, default=100, help="held-out target tasks (default 100)")
    f.add_argument("--joint-steps", type=int, default=2000, help="training steps of the joint baseline (default 2000)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", help="output directory (default RUN_DIR/finetune)")
    f.set_defaults(func=cmd_finetune)
    p = sub.add_parser(
        "plot",
        help="draw a run's learning curves to RUN_DIR/learning.png",
        description="Draw metrics.jsonl (training loss and accuracy, validation accuracy, gradient "
        "norm) of a run directory to RUN_DIR/learning.png. Works while the run is going.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=cmd_plot)
    d = sub.add_parser("data", help="check that a data set is where metajax looks for it, or prepare it")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dc = dsub.add_parser(
        "check",
        help="load a data set and print its counts",
        description="Load a data set as training would and print its counts, or say what is missing and how to "
        "get it. Omniglot: a TFDS copy (omniglot/3.0.0) or the two original zips in --data-dir. CIFAR-FS and "
        "FC100: the TFDS dataset cifar100, CUB: caltech_birds2011, prepared (array_record) in --data-dir.",
    )
    dc.add_argument("dataset", choices=["omniglot", "miniimagenet", "tiered_imagenet", "cifar_fs", "fc100", "cub"])
    dc.add_argument(
        "--data-dir",
        help="data directory (default: $METAJAX_MINIIMAGENET_DIR for Mini-ImageNet, $METAJAX_TIEREDIMAGENET_DIR "
        "for tiered-ImageNet, else $METAJAX_DATA_DIR, "
        "else ~/tensorflow_datasets)",
    )
    dc.add_argument(
        "--allow-pickle", action="store_true", help="Mini-ImageNet, tiered-ImageNet: convert trusted .pkl files once"
    )
    dc.set_defaults(func=cmd_data_check)
    dp = dsub.add_parser(
        "prepare",
        help="prepare TFDS omniglot 3.0.0 from local zips (no network; needs TensorFlow)",
        description="Run tensorflow-datasets' omniglot builder on the four zips in --zips (images_background, "
        "images_evaluation, images_background_small1, images_background_small2) without downloading; copies "
        "with the same PNG files but different zip bytes are accepted (their own checksums are registered for "
        "this preparation, and the command says which files differ from the originals). Writes "
        "DATA_DIR/omniglot/3.0.0 and reads it back. Needs TensorFlow: pip install 'metajax[prepare]'. "
        "Optional: metajax also trains straight from the two main zips.",
    )
    dp.add_argument("dataset", choices=["omniglot"])
    dp.add_argument("--zips", required=True, help="directory holding the four Omniglot zips")
    dp.add_argument(
        "--data-dir", help="TFDS data directory to write (default: $METAJAX_DATA_DIR, then ~/tensorflow_datasets)"
    )
    dp.add_argument(
        "--format",
        choices=["array_record", "tfrecord"],
        default="array_record",
        help="TFDS file format (array_record: random access without TensorFlow, what metajax reads)",
    )
    dp.set_defaults(func=cmd_data_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    from metajax._src.data.omniglot import DataNotFoundError

    try:
        return args.func(args)
    except (ValueError, DataNotFoundError, MemoryError, PermissionError) as err:
        say(f"metajax {args.command}: error: {err}")
        return 2
    except OSError as err:  # a full disk, a file that vanished, a permission: one line naming the file
        where = f"{err.filename}: " if err.filename else ""
        say(f"metajax {args.command}: error: {where}{err.strerror or err}")
        return 1
    except KeyboardInterrupt:  # before training installed its own handler (start-up, data loading, compiling)
        say(
            f"metajax {args.command}: interrupted (run the same command again; a training run resumes from its "
            "last checkpoint)"
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
