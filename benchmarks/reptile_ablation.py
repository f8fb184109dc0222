"""Reptile paper ablations (Nichol, Achiam & Schulman 2018, section 6) on Omniglot 5-way 5-shot.

    python benchmarks/reptile_ablation.py --data-dir DIR --study combos
    # ~20 min on 2 cores; writes benchmarks/results/reptile_ablation.{json,md,png}
    python benchmarks/reptile_ablation.py --data-dir DIR --study tail
    # ~40 min on 2 cores; writes benchmarks/results/reptile_tail.{json,md,png}

Study "combos" (the paper's inner-gradient-combination figure). Each task
runs k = 4 SGD steps on consecutive minibatches of its support set (Omniglot
5-way 5-shot, classes interleaved so each minibatch of 5 holds one example per
class); g_i is the gradient of minibatch i at the i-th iterate.
The meta-gradient is a sum of some of them, as in the paper's figure:

  g1             joint training on the task distribution (no adaptation in it)
  g2             first-order MAML (the second minibatch plays the query set)
  g1+g2, g1+g2+g3, g1+g2+g3+g4   towards Reptile (the sum of all g_i is the
                 Reptile direction divided by the inner rate)

Outer Adam 1e-3, meta-batch 5, ``--steps`` meta-steps per variant, all from
the same initialisation and the same task stream; evaluation: 200 test tasks
of the MAML split, 10 full-batch SGD steps on the 25 support images, accuracy
on 15 queries per class (transductive batch norm). The paper reports the
ordering g1 << g2 < g1+g2 < g1+g2+g3 < g1+g2+g3+g4 in 5-shot 5-way
Omniglot test accuracy after 100k steps; this is a shortened CPU run.

Study "tail" (the paper's overlap figure): k = 4 SGD steps on minibatches of
B examples cycling through the 25 support images (shot-major, so a minibatch
of 5 holds one example per class), for B in 5, 10, 15, 20, 25. The
meta-gradient is
  FOMAML, shared tail    gradient at the adapted weights on the next minibatch
                         of the *same* cycle through the support set (it
                         overlaps data the inner loop already trained on once
                         B > 5; at B = 25 it is exactly the training batch)
  FOMAML, separate tail  gradient at the adapted weights on B of the 25
                         held-out query images of the task (never trained on)
  Reptile                the sum of the k inner gradients, (phi - theta) / lr
The paper reports that shared-tail FOMAML degrades as the inner batch grows
while separate-tail FOMAML and Reptile do not. Same outer optimiser, budget
and evaluation as the "combos" study.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import metajax as mj
from metajax.experiment import FewShot, build_learner, resolve_runtime

VARIANTS = {
    "g1 (joint training)": (1, 0, 0, 0),
    "g2 (FOMAML)": (0, 1, 0, 0),
    "g1+g2": (1, 1, 0, 0),
    "g1+g2+g3": (1, 1, 1, 0),
    "g1+g2+g3+g4 (Reptile)": (1, 1, 1, 1),
}
K, LR, MINIBATCH = 4, 0.1, 5


def inner_sgd(loss_fn, params, support, batch: int):
    """K SGD steps (rate LR) on consecutive minibatches of ``batch`` cycling through ``support``.

    Returns the adapted parameters, the K gradients (stacked; g_i at the i-th
    iterate) and the K minibatch losses.
    """
    x, y = support
    n = x.shape[0]

    def step(p, t):
        idx = (t * batch + jnp.arange(batch)) % n
        (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p, (x[idx], y[idx]))
        return jax.tree_util.tree_map(lambda a, b: a - LR * b, p, g), (g, loss)

    adapted, (grads, losses) = jax.lax.scan(step, params, jnp.arange(K))
    return adapted, grads, losses


def combination_learner(base: mj.MetaLearner, loss_fn, weights) -> mj.MetaLearner:
    w = jnp.asarray(weights, jnp.float32)

    def task_direction(meta_params, task, context=None):
        del context  # no model state, no randomness
        _, grads, losses = inner_sgd(loss_fn, meta_params, task.support, MINIBATCH)
        direction = jax.tree_util.tree_map(lambda gs: jnp.tensordot(w, gs, axes=1), grads)
        return direction, {"support_loss": losses[0], "query_loss": losses[-1]}, None

    def meta_grad(meta_params, tasks, context=None):
        return mj.batch_over_tasks(lambda p, t: task_direction(p, t, context), meta_params, tasks, 1)

    return base._replace(task_direction=task_direction, meta_grad=meta_grad)


TAIL_MODES = ("FOMAML, shared tail", "FOMAML, separate tail", "Reptile")
TAIL_BATCHES = (5, 10, 15, 20, 25)


def tail_learner(base: mj.MetaLearner, loss_fn, mode: str, batch: int) -> mj.MetaLearner:
    if mode not in TAIL_MODES:
        raise ValueError(f"mode must be one of {TAIL_MODES}, got {mode!r}.")
    grad = jax.value_and_grad(loss_fn, has_aux=True)

    def task_direction(meta_params, task, context=None):
        del context  # no model state, no randomness
        x, y = task.support
        n = x.shape[0]
        adapted, grads, losses = inner_sgd(loss_fn, meta_params, task.support, batch)
        if mode == "Reptile":
            direction = jax.tree_util.tree_map(lambda gs: gs.sum(0), grads)
            tail_loss = losses[-1]
        else:
            if mode == "FOMAML, shared tail":
                idx = (K * batch + jnp.arange(batch)) % n
                tail = (x[idx], y[idx])
            else:
                qx, qy = task.query
                tail = (qx[:batch], qy[:batch])
            (tail_loss, _), direction = grad(adapted, tail)
        return direction, {"support_loss": losses[0], "query_loss": tail_loss}, None

    def meta_grad(meta_params, tasks, context=None):
        return mj.batch_over_tasks(lambda p, t: task_direction(p, t, context), meta_params, tasks, 1)

    return base._replace(task_direction=task_direction, meta_grad=meta_grad)


def train_and_evaluate(fs: FewShot, learner: mj.MetaLearner, init, steps: int) -> dict:
    """``steps`` Adam(1e-3) meta-steps from ``init`` on the fixed task stream, then the test evaluation."""
    ms = mj.make_meta_step(learner, optax.adam(1e-3))
    chunk = min(100, steps)
    loop = jax.jit(mj.make_train_loop(ms, fs.sample_train, chunk), donate_argnums=(0, 1))
    params = jax.tree_util.tree_map(jnp.copy, init)
    state = ms.init(params)
    t0 = time.perf_counter()
    curve = []
    for i in range(steps // chunk):
        params, state, metrics = loop(params, state, jax.random.PRNGKey(1), fs.images["train"])
        curve.append({"step": (i + 1) * chunk, "support_loss": float(jnp.mean(metrics["support_loss"]))})
    train_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        res = fs.evaluate(params, Path(tmp), tag="ablation")["results"]["transductive"]
    return {**res, "train_s": train_s, "curve": curve}


def _plot(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    draw(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_combos(fs: FewShot, init, args, out: Path) -> str:
    rows = []
    for name, weights in VARIANTS.items():
        r = train_and_evaluate(fs, combination_learner(fs.learner, fs.loss_fn, weights), init, args.steps)
        rows.append({"variant": name, "weights": weights, **r})
        print(f"{name}: {r['accuracy'] * 100:.2f} +- {r['ci95'] * 100:.2f} % ({r['train_s']:.0f} s)", file=sys.stderr)
    lines = [
        f"Omniglot 5-way 5-shot (MAML split), k = {K} SGD steps (rate {LR}) on minibatches of {MINIBATCH}, "
        f"outer Adam 1e-3, meta-batch 5, {args.steps} meta-steps per variant; {args.eval_tasks} test tasks, "
        "10 full-batch SGD steps, transductive batch norm.",
        "",
        "| meta-gradient | test accuracy (mean ± 95% CI) | training time |",
        "|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['accuracy'] * 100:.2f} ± {r['ci95'] * 100:.2f} % | {r['train_s']:.0f} s |")
    from provenance import provenance, write_json

    write_json(out / "reptile_ablation.json", rows, provenance(config=args, data_dir=args.data_dir))

    def draw(ax):
        ax.bar(range(len(rows)), [r["accuracy"] * 100 for r in rows], yerr=[r["ci95"] * 100 for r in rows])
        ax.set_xticks(range(len(rows)), [r["variant"].split(" ")[0] for r in rows])
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"inner-gradient combinations, {args.steps} meta-steps")

    _plot(out / "reptile_ablation.png", draw)
    text = "\n".join(lines) + "\n"
    (out / "reptile_ablation.md").write_text(text)
    return text


def run_tail(fs: FewShot, init, args, out: Path) -> str:
    rows = []
    for batch in args.batches:
        for mode in TAIL_MODES:
            r = train_and_evaluate(fs, tail_learner(fs.learner, fs.loss_fn, mode, batch), init, args.steps)
            rows.append({"mode": mode, "inner_batch": batch, **r})
            print(
                f"B={batch} {mode}: {r['accuracy'] * 100:.2f} +- {r['ci95'] * 100:.2f} % ({r['train_s']:.0f} s)",
                file=sys.stderr,
            )
            from provenance import provenance, write_json

            # partial results survive a crash; the provenance is beside them (reptile_tail.provenance.json)
            write_json(out / "reptile_tail.json", rows, provenance(config=args, data_dir=args.data_dir))
    return report_tail(rows, args.steps, args.eval_tasks, out)


def report_tail(rows: list[dict], steps: int, eval_tasks: int, out: Path) -> str:
    """Table and plot of the tail study from its rows (also for a partial ``reptile_tail.json``)."""
    batches = sorted({r["inner_batch"] for r in rows})
    lines = [
        f"Omniglot 5-way 5-shot (MAML split), k = {K} SGD steps (rate {LR}) on minibatches of B cycling through "
        f"the 25 support images, outer Adam 1e-3, meta-batch 5, {steps} meta-steps per cell; "
        f"{eval_tasks} test tasks, 10 full-batch SGD steps, transductive batch norm.",
        "",
        "| inner batch B | " + " | ".join(TAIL_MODES) + " |",
        "|---" * (len(TAIL_MODES) + 1) + "|",
    ]
    for batch in batches:
        cells = []
        for mode in TAIL_MODES:
            hit = [r for r in rows if r["mode"] == mode and r["inner_batch"] == batch]
            cells.append(f"{hit[0]['accuracy'] * 100:.2f} ± {hit[0]['ci95'] * 100:.2f} %" if hit else "not run")
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")

    def draw(ax):
        for mode in TAIL_MODES:
            rs = [r for r in rows if r["mode"] == mode]
            ax.errorbar(
                [r["inner_batch"] for r in rs],
                [r["accuracy"] * 100 for r in rs],
                yerr=[r["ci95"] * 100 for r in rs],
                marker="o",
                capsize=3,
                label=mode,
            )
        ax.set_xlabel("inner batch size B (support set: 25 images)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"overlap of inner minibatches, {steps} meta-steps")
        ax.legend()

    _plot(out / "reptile_tail.png", draw)
    text = "\n".join(lines) + "\n"
    (out / "reptile_tail.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="TFDS data directory holding omniglot/3.0.0")
    parser.add_argument("--study", choices=["combos", "tail"], default="combos", help="which ablation to run")
    parser.add_argument("--steps", type=int, default=2000, help="meta-steps per variant (a multiple of 100)")
    parser.add_argument("--eval-tasks", type=int, default=600, help="test tasks per variant")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=list(TAIL_BATCHES), help="inner batch sizes of the tail study"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="tail study: redraw reptile_tail.{md,png} from results/reptile_tail.json (e.g. a partial run)",
    )
    args = parser.parse_args(argv)
    out = Path(__file__).resolve().parent / "results"
    if args.report_only:
        print(report_tail(json.loads((out / "reptile_tail.json").read_text()), args.steps, args.eval_tasks, out))
        return 0
    if args.steps < 1 or (args.steps > 100 and args.steps % 100):
        parser.error(f"--steps must be <= 100 or a multiple of 100, got {args.steps}")
    bad = [b for b in args.batches if not 1 <= b <= 25]
    if bad:
        parser.error(f"--batches must lie in 1..25 (the support set has 25 images), got {bad}")
    from metajax.configs.omniglot import omniglot_config

    c = omniglot_config("fomaml", 5, 5)
    c.data.data_dir = args.data_dir
    c.data.meta_batch_size = 5
    c.data.order = "shot"
    c.inner.lr, c.inner.steps = LR, 10
    c.eval.steps, c.eval.num_tasks, c.eval.bn = 10, args.eval_tasks, ("transductive",)
    fs = FewShot(
        c, lambda loss_fn, **kw: build_learner("fomaml", loss_fn, c.inner, task_chunk=1, **kw), resolve_runtime(c)
    )
    init = fs.model.init(jax.random.PRNGKey(0))
    out.mkdir(exist_ok=True)
    text = (run_combos if args.study == "combos" else run_tail)(fs, init, args, out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
