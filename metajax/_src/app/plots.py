"""PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from metajax._src.app.rundir import read_metrics, report_damaged_lines  # noqa: E402
from metajax._src.data import sinusoid  # noqa: E402
from metajax._src.evaluation import summarize  # noqa: E402

COLORS = {"random": "tab:gray", "pretrained": "tab:orange"}
STEP_COLORS = {0: "#9ecae1", 1: "#3182bd", 10: "#08306b"}  # Blues: 0, 1 and 10 inner steps


def plot_sinusoid(
    path: Path,
    exp: Any,
    inits: dict[str, tuple[Any, Any]],
    tasks: Any,
    tp: Any,
    curves: dict[str, np.ndarray],
    num_examples: int = 3,
    diverged_above: float = np.inf,
) -> None:
    """Adaptation curves and example fits, as in the MAML and Reptile papers.

    Curves show the mean with a 95% CI band over the tasks that did not
    diverge (as in ``eval.md``, which also counts the diverged ones).
    """
    num_examples = max(0, min(num_examples, curves[next(iter(curves))].shape[0]))
    fig, axes = plt.subplots(1, 1 + num_examples, figsize=(4.2 * (1 + num_examples), 3.6))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    for name, c in curves.items():
        steps = np.arange(c.shape[1])
        rows = summarize(c, steps, diverged_above)
        mean = np.array([r["mean"] for r in rows])
        ci = np.array([r["ci95"] for r in rows])
        color = COLORS.get(name, "tab:blue")
        ax.plot(steps, mean, label=name, color=color)
        ax.fill_between(steps, mean - ci, mean + ci, color=color, alpha=0.25)
    ax.set_yscale("log")
    ax.set_xlabel("inner steps")
    ax.set_ylabel(f"query MSE, mean ± 95% CI ({curves[next(iter(curves))].shape[0]} tasks)")
    ax.set_title("adaptation on held-out tasks")
    ax.legend()
    ax.grid(alpha=0.3)

    grid = jnp.linspace(-5.0, 5.0, 200)[:, None]
    shown = (0, 1, 10)
    meta_name = next(iter(inits))
    for j in range(num_examples):
        ax = axes[1 + j]
        support = jax.tree_util.tree_map(lambda x, j=j: x[j], tasks.support)
        truth = sinusoid.sinusoid(jax.tree_util.tree_map(lambda a, j=j: a[j : j + 1], tp), grid[None])[0]
        ax.plot(grid[:, 0], truth[:, 0], color="k", lw=2, label="true")
        ax.scatter(support[0][:, 0], support[1][:, 0], color="k", marker="^", zorder=5, label="support")
        for name, (adapt, params) in inits.items():
            if name == "random":
                continue
            res = adapt(params, support, num_steps=max(shown), eval_fn=lambda p: exp.model.apply(p, grid))
            for s in shown if name == meta_name else (10,):
                # one colour per step count for the meta-learned init (a light-to-dark sequence), the baseline's own
                color = STEP_COLORS.get(s, "tab:blue") if name == meta_name else COLORS.get(name, "tab:orange")
                style = {"color": color, "ls": "--" if s == 0 else "-", "lw": 1.6}
                ax.plot(grid[:, 0], res.trace[s][:, 0], label=f"{name}, {s} steps", **style)
        ax.set_ylim(-6, 6)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"task {j}: A={float(tp.amplitude[j]):.2f}, phase={float(tp.phase[j]):.2f}")
        if j == 0:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(run_dir: Path) -> Path:
    """Draw ``metrics.jsonl`` (training query loss/accuracy, validation accuracy, gradient norm) to ``learning.png``;
    a ``metajax pretrain`` run's training loss and accuracy per step likewise.

    Damaged lines of the metrics file are skipped and reported (file and line numbers).
    """
    path = Path(run_dir) / "metrics.jsonl"
    rows, bad = read_metrics(path)
    report_damaged_lines(path, bad)
    if not rows:
        raise ValueError(f"RUN_DIR: {path} holds no metrics records yet.")
    steps = np.array([r["step"] for r in rows])
    supervised = "loss" in rows[0]  # metajax pretrain: plain training steps, not meta-steps
    loss_key = "loss" if supervised else "query_loss" if "query_loss" in rows[0] else "support_loss"
    panels = [(loss_key, "training loss", "loss", True)]
    if "query_accuracy" in rows[0] or "accuracy" in rows[0]:
        key = "accuracy" if supervised else "query_accuracy"
        panels.append((key, "training accuracy" if supervised else "training query accuracy", "accuracy", False))
    if any("val_accuracy" in r for r in rows):
        panels.append(("val_accuracy", "validation accuracy", "accuracy", False))
    if "query_return" in rows[0]:  # meta-RL: the adapted policies' mean return on the training tasks
        panels.append(("query_return", "training return after adaptation", "return", False))
    if "grad_norm" in rows[0] or "kl" not in rows[0]:
        panels.append(("grad_norm", "gradient norm" if supervised else "meta-gradient norm", "norm", True))
    else:  # meta-RL's TRPO outer step: the KL of the accepted step instead of a gradient norm
        panels.append(("kl", "TRPO step KL", "KL", False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title, ylabel, log) in zip(np.atleast_1d(axes), panels, strict=True):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        # markers where the points are few (validation, short runs): a lone point stays visible
        marker = "o" if key == "val_accuracy" or len(pts) <= 50 else None
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ms=4, clip_on=False)
        ax.set_title(title)
        ax.set_xlabel("step" if supervised else "meta-step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        values = np.asarray([p[1] for p in pts], float)
        values = values[np.isfinite(values) & (values > 0)]
        if log and values.size and values.max() > 10 * values.min():  # a log axis only where it spans a decade
            ax.set_yscale("log")
        ax.set_xlim(0, steps.max() * 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    fig.tight_layout()
    out = Path(run_dir) / "learning.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _thousands(x: float, _pos: Any = None) -> str:
    """Tick labels as 500, 10k, 1.5M: short enough not to run together."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def plot_curves_file(path: Path) -> Path:
    """Adaptation curves saved by an evaluation (``curves.npz``) to ``adaptation_curves.png`` beside it."""
    with np.load(path) as z:
        curves = {k: z[k] for k in z.files}
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name, c in curves.items():
        rows = summarize(c, np.arange(c.shape[1]), 100.0)
        mean = np.array([r["mean"] for r in rows])
        ci = np.array([r["ci95"] for r in rows])
        color = COLORS.get(name, "tab:blue")
        ax.plot(np.arange(c.shape[1]), mean, label=name, color=color)
        ax.fill_between(np.arange(c.shape[1]), mean - ci, mean + ci, color=color, alpha=0.25)
    ax.set_yscale("log")
    ax.set_xlabel("inner steps")
    ax.set_ylabel("query loss, mean ± 95% CI")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path).with_name("adaptation_curves.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_rl_adaptation(path: Path, curves: dict[str, np.ndarray], env_name: str, actions: str | None = None) -> None:
    """Meta-RL: the mean return (± 95% CI over the test tasks) against inner policy-gradient steps, per init."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for name, c in curves.items():
        steps = np.arange(c.shape[1])
        rows = summarize(c, steps)
        mean = np.array([r["mean"] for r in rows])
        ci = np.array([r["ci95"] for r in rows])
        color = COLORS.get(name, "tab:blue")
        ax.plot(steps, mean, marker="o", label=name, color=color)
        ax.fill_between(steps, mean - ci, mean + ci, color=color, alpha=0.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("inner policy-gradient steps")
    ax.set_ylabel(f"return, mean ± 95% CI ({curves[next(iter(curves))].shape[0]} tasks)")
    ax.set_title(env_name + (f" ({actions} actions)" if actions else ""))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_navigation_trajectories(
    path: Path,
    goals: np.ndarray,
    rollouts: dict[str, tuple[np.ndarray, np.ndarray]],
    num_examples: int = 4,
    actions: str | None = None,
) -> None:
    """2D navigation: trajectories on the plane before and after adaptation, one panel per test goal (a star).

    ``rollouts[name] = (observations, masks)`` with shapes ``(tasks, steps + 1, trajectories, T, 2)`` and
    ``(tasks, steps + 1, trajectories, T)``; the meta-learned init (the first entry) is drawn after 0, 1 and the
    last number of inner steps, light to dark.
    """
    name = next(iter(rollouts))
    obs, masks = rollouts[name]
    last = obs.shape[1] - 1
    shown = sorted({0, min(1, last), last})
    shades = {0: "#9ecae1", 1: "#3182bd"}
    fig, axes = plt.subplots(1, num_examples, figsize=(3.6 * num_examples, 3.8), squeeze=False)
    for j, ax in enumerate(axes[0]):
        for s in shown:
            color = shades.get(s, "#08306b") if s != last or s == 0 else "#08306b"
            for i in range(obs.shape[2]):
                alive = masks[j, s, i] > 0
                xy = np.concatenate([np.zeros((1, 2)), obs[j, s, i][alive]])
                ax.plot(xy[:, 0], xy[:, 1], color=color, lw=1.2, alpha=0.8, label=f"{s} steps" if i == 0 else None)
        ax.scatter([0.0], [0.0], color="k", marker="o", s=25, zorder=5, label="start")
        ax.scatter(goals[j, 0], goals[j, 1], color="tab:red", marker="*", s=160, zorder=6, label="goal")
        alive = masks[j][shown] > 0
        reach = float(np.abs(obs[j][shown][alive]).max()) if alive.any() else 0.0
        lim = max(0.6, reach + 0.05)  # the goal square, widened to where the trajectories go
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.set_title(f"goal ({goals[j, 0]:.2f}, {goals[j, 1]:.2f})")
        if j == 0:
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{name}: trajectories before and after adaptation" + (f" ({actions} actions)" if actions else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
