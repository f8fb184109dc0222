"""Meta-train, then fine-tune: ordinary supervised training from a meta-learned init.

The question: is a meta-learned initialisation a better starting point
for plain fine-tuning (many steps of an ordinary optimiser on a target task's
few labelled examples) than a random or a jointly trained one? For each of a
set of held-out target tasks, every initialisation is fine-tuned on the
task's support set with the same Optax optimiser and step count, and its
query loss (and accuracy, for classification) is recorded after every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optax

from metajax._src.base import Params, Task, check_positive_int
from metajax._src.evaluation import adaptation_curves, ci95, plain_adapter
from metajax._src.files import strict_json


def fine_tune(
    loss_fn: Any,
    query_loss: Any,
    inits: dict[str, Params],
    tasks: Task,
    opt: optax.GradientTransformation,
    num_steps: int,
    *,
    has_aux: bool = False,
    task_chunk: int | None = 1,
    mesh: Any = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Fine-tune every initialisation on every task's support set; query curves per step.

    Args:
      loss_fn: training loss ``loss_fn(params, batch)``.
      query_loss: ``query_loss(params, query, support) -> (loss, aux)``.
      inits: ``{name: params}``, e.g. meta-learned, random, jointly trained.
      tasks: a task batch (support = the few labels, query = held-out examples).
      opt: the fine-tuning optimiser (any Optax transformation).
      num_steps: fine-tuning steps.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      task_chunk: tasks processed together.
      mesh: split the tasks over this mesh's devices (``None``: one device).

    Returns:
      ``{metric: {name: (num_tasks, num_steps + 1) array}}`` with the metrics
      ``loss`` and every aux entry of ``query_loss`` (e.g. ``accuracy``).
    """
    num_steps = check_positive_int("num_steps", num_steps)
    adapt = plain_adapter(loss_fn, opt, has_aux)
    per_init = {
        name: adaptation_curves(adapt, params, query_loss, tasks, num_steps, task_chunk, "all", mesh=mesh)
        for name, params in inits.items()
    }
    metrics = next(iter(per_init.values())).keys()
    return {m: {name: curves[m] for name, curves in per_init.items()} for m in metrics}


def summarize_curves(curves: dict[str, np.ndarray], steps: list[int]) -> dict[str, list[dict[str, float]]]:
    out = {}
    for name, c in curves.items():
        rows = []
        for s in steps:
            col = c[:, s].astype(np.float64)
            ci = ci95(col)
            rows.append({"steps": int(s), "mean": float(col.mean()), "ci95": float(ci)})
        out[name] = rows
    return out


def write_report(out: Path, title: str, results: dict[str, dict[str, np.ndarray]], steps: list[int]) -> str:
    """Table (markdown), JSON and a plot of fine-tuning curves per initialisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summary = {metric: summarize_curves(curves, steps) for metric, curves in results.items()}
    lines = [title, ""]
    for metric, table in summary.items():
        names = list(table)
        lines += ["| steps | " + " | ".join(f"{n} {metric}" for n in names) + " |", "|---|" + "---|" * len(names)]
        for i, s in enumerate(steps):
            lines.append(
                f"| {s} | " + " | ".join(f"{table[n][i]['mean']:.4g} ± {table[n][i]['ci95']:.2g}" for n in names) + " |"
            )
        lines.append("")
    text = "\n".join(lines)
    (out / "finetune.md").write_text(text)
    (out / "finetune.json").write_text(strict_json(summary))
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6))
    for ax, (metric, curves) in zip(np.atleast_1d(axes), results.items(), strict=True):
        for name, c in curves.items():
            mean = c.mean(axis=0)
            ci = ci95(c, axis=0)
            x = np.arange(c.shape[1])
            ax.plot(x, mean, label=name)
            ax.fill_between(x, mean - ci, mean + ci, alpha=0.25)
        ax.set_xlabel("fine-tuning steps")
        ax.set_ylabel(f"query {metric} (mean ± 95% CI)")
        if metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title.split(".")[0], fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "finetune.png", dpi=110)
    plt.close(fig)
    return text
