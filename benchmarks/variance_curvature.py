"""Support-set variance of the meta-gradient against the curvature of the task loss.

    python benchmarks/variance_curvature.py   # ~1 min; writes benchmarks/results/variance_curvature.{json,md,png}

Linear-regression tasks ``y = x . w_t`` with features ``x ~ N(0, c I)`` in
d = 5 dimensions: the support loss ``mean((x . w - y)^2)`` has Hessian ``2c I``
in expectation, so ``lambda = 2c`` sets the curvature while everything else
stays fixed. For one inner SGD step, FOMAML's meta-gradient is
``grad L_q(w) - alpha H_q grad L_s(w)`` exactly, so the variance that the
support draw contributes is ``alpha^2 H_q Var_s(grad L_s) H_q``: it grows
with ``alpha^2``, with the square of the curvature, and with the noise of the
support gradient (which here also grows with ``c``). The script separates
the last factor: it estimates the support component of the meta-gradient
variance (nested design, ``metajax.diagnostics.variance_decomposition``) and the support-draw
variance of the inner gradient itself, and fits
``support / (alpha^2 Var_s(grad L_s)) ~ lambda^p``; the prediction is p = 2.
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import metajax as mj  # noqa: E402
from metajax import diagnostics as v  # noqa: E402

CURVATURES = [0.25, 0.5, 1.0, 2.0, 4.0]  # c; lambda = 2c
ALPHA, D, SHOTS = 1e-3, 5, 10
T, S, Q = 10, 20, 10


def loss(w, batch):
    x, y = batch
    return jnp.mean(jnp.square(x @ w - y))


def nested_linreg_tasks(key, c):
    kw, ks, kq = jax.random.split(key, 3)
    w_t = jax.random.normal(kw, (T, D))
    xs = jnp.sqrt(c) * jax.random.normal(ks, (T, S, SHOTS, D))
    xq = jnp.sqrt(c) * jax.random.normal(kq, (T, Q, SHOTS, D))
    xs_b = jnp.broadcast_to(xs[:, :, None], (T, S, Q, SHOTS, D))
    xq_b = jnp.broadcast_to(xq[:, None], (T, S, Q, SHOTS, D))

    def y(x):
        return jnp.einsum("tsqnd,td->tsqn", x, w_t)

    return mj.Task((xs_b, y(xs_b)), (xq_b, y(xq_b)))


def inner_gradient_direction(w, task):
    """The support gradient itself, as a 'direction', to measure Var_s(grad L_s)."""
    return jax.grad(loss)(w, task.support), {}


def main() -> int:
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    w0 = jnp.zeros((D,))
    rows = []
    for c in CURVATURES:
        tasks = nested_linreg_tasks(jax.random.PRNGKey(0), c)
        noise = v.variance_decomposition(inner_gradient_direction, w0, tasks)["support"]
        for name, factory in (("maml", mj.maml), ("fomaml", mj.fomaml)):
            comp = v.variance_decomposition(factory(loss, "sgd", 1, inner_lr=ALPHA).task_direction, w0, tasks)
            rows.append(
                {
                    "algorithm": name,
                    "c": c,
                    "curvature": 2 * c,
                    "support": comp["support"],
                    "task": comp["task"],
                    "query": comp["query"],
                    "inner_grad_support_var": noise,
                    "normalised": comp["support"] / (ALPHA**2 * noise),
                }
            )
    fits = {}
    for name in ("maml", "fomaml"):
        sel = [r for r in rows if r["algorithm"] == name]
        fits[name] = {
            "support": v.fit_exponent([r["curvature"] for r in sel], [r["support"] for r in sel]),
            "normalised": v.fit_exponent([r["curvature"] for r in sel], [r["normalised"] for r in sel]),
        }
    lines = [
        f"Linear regression, d = {D}, K = {SHOTS}, alpha = {ALPHA:g}, {T} tasks x {S} support x {Q} query draws, "
        "float64, one inner SGD step at w = 0.",
        "",
        "| algorithm | curvature lambda | support component | Var_s(grad L_s) | support / (alpha^2 Var_s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['algorithm']} | {r['curvature']:g} | {r['support']:.4g} | {r['inner_grad_support_var']:.4g} | "
            f"{r['normalised']:.4g} |"
        )
    lines.append("")
    for name, f in fits.items():
        lines.append(
            f"{name}: support ~ lambda^{f['support']:.2f}; normalised by the inner-gradient noise ~ "
            f"lambda^{f['normalised']:.2f} (prediction 2)"
        )
    text = "\n".join(lines) + "\n"
    (out / "variance_curvature.md").write_text(text)
    from provenance import provenance, write_json

    config = {"curvatures": CURVATURES}  # the script takes no arguments
    write_json(out / "variance_curvature.json", {"rows": rows, "exponents": fits}, provenance(argv=[], config=config))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, marker in (("maml", "o"), ("fomaml", "s")):
        sel = [r for r in rows if r["algorithm"] == name]
        lam = [r["curvature"] for r in sel]
        ax.plot(lam, [r["support"] for r in sel], marker + "-", label=f"{name}: support component")
        ax.plot(lam, [r["normalised"] * 1e-6 for r in sel], marker + "--", label=f"{name}: normalised (x1e-6)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("curvature lambda (support Hessian 2c I)")
    ax.set_title(f"support variance vs curvature (alpha = {ALPHA:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "variance_curvature.png", dpi=110)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
