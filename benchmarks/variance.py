"""Meta-gradient variance decomposition on sinusoid: task / support / query components vs alpha.

    python benchmarks/variance.py            # ~1 min on 2 cores; writes benchmarks/results/variance.{json,md,png}

For MAML and FOMAML at a fixed random init of the MAML paper's 1-40-40-1 MLP
(float64), 10 tasks x 10 support draws x 10 query draws (K = 10 points each),
the three components of the single-task meta-gradient variance are estimated
for alpha in {1e-4, ..., 1e-2}, and the exponent of support ~ alpha^p is
fitted on the small-alpha points (alpha <= 1e-3), where the first-order
expansion of the inner step holds.
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import metajax as mj  # noqa: E402
from metajax import diagnostics as v  # noqa: E402
from metajax.models import mlp, mse_loss  # noqa: E402

ALPHAS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]


def main() -> int:
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    model = mlp()
    params = jax.tree_util.tree_map(lambda x: x.astype("float64"), model.init(jax.random.PRNGKey(0)))
    tasks = v.nested_sinusoid_tasks(jax.random.PRNGKey(1), 10, 10, 10)
    rows, fits = [], {}
    for name, factory in (("maml", mj.maml), ("fomaml", mj.fomaml)):
        for a in ALPHAS:
            learner = factory(mse_loss(model.apply), "sgd", 1, inner_lr=a)
            rows.append(
                {"algorithm": name, "alpha": a, **v.variance_decomposition(learner.task_direction, params, tasks)}
            )
        small = [r for r in rows if r["algorithm"] == name and r["alpha"] <= 1e-3]
        fits[name] = v.fit_exponent([r["alpha"] for r in small], [r["support"] for r in small])
    lines = ["| algorithm | alpha | task | support | query | support / total |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['algorithm']} | {r['alpha']:g} | {r['task']:.4g} | {r['support']:.4g} | "
            f"{r['query']:.4g} | {r['support'] / r['total']:.3f} |"
        )
    lines.append("")
    lines += [f"Fitted support ~ alpha^p for alpha <= 1e-3: {k} p = {p:.2f}" for k, p in fits.items()]
    text = "\n".join(lines) + "\n"
    (out / "variance.md").write_text(text)
    from provenance import provenance, write_json

    config = {"alphas": ALPHAS}  # the script takes no arguments
    write_json(out / "variance.json", {"rows": rows, "support_exponent": fits}, provenance(argv=[], config=config))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, name in zip(axes, ("maml", "fomaml"), strict=True):
        sel = [r for r in rows if r["algorithm"] == name]
        for comp in ("task", "support", "query"):
            ax.plot([r["alpha"] for r in sel], [max(r[comp], 1e-6) for r in sel], "o-", label=comp)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("inner learning rate α")
        ax.set_title(f"{name}: support ~ α^{fits[name]:.2f} (α ≤ 1e-3)")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("variance component (trace)")
    fig.tight_layout()
    fig.savefig(out / "variance.png", dpi=110)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
