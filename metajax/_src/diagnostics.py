"""Exact vs first-order meta-gradients, side by side, per layer.

:func:`compare_meta_gradients` computes, on one task batch and from the same
initial parameters, the exact MAML meta-gradient, the FOMAML gradient, the
Reptile direction and (optionally) central finite differences of the
meta-objective, and reports per parameter array and overall: norms, cosine
similarities, relative errors and the size of the second-order term
(exact - first-order). :func:`one_d_example` prints the closed form of
a scalar example with a closed form next to the computed numbers.

The Reptile direction ``phi - phi~`` is divided by ``inner_lr * k`` so that
its norm is on the scale of a gradient (for SGD it is then the mean of the k
inner gradients); cosines do not depend on that scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metajax._src.base import MetaLearner, Task
from metajax._src.inner import path_str
from metajax._src.learner import post_adaptation_risk
from metajax._src.maml import fomaml, maml
from metajax._src.reptile import reptile


def _flat(tree: Any) -> dict[str, np.ndarray]:
    return {path_str(p): np.asarray(x, np.float64).ravel() for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    n = np.linalg.norm(ref)
    return float(np.linalg.norm(a - ref) / n) if n > 0 else float("nan")


def meta_objective(learner: MetaLearner, meta_params: Any, tasks: Task) -> jax.Array:
    """Mean post-adaptation query loss over the task batch."""
    return jnp.mean(post_adaptation_risk(learner, meta_params, tasks))


def finite_difference_gradient(f: Callable[[Any], jax.Array], params: Any, eps: float = 1e-5, chunk: int = 256) -> Any:
    """Central differences of a scalar function, one coordinate at a time (small models only)."""
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def partial(i):
        e = jnp.zeros_like(flat).at[i].set(eps)
        return (f(unravel(flat + e)) - f(unravel(flat - e))) / (2 * eps)

    return unravel(jax.lax.map(partial, jnp.arange(flat.size), batch_size=chunk))


def compare_meta_gradients(
    loss_fn: Callable,
    params: Any,
    tasks: Task,
    *,
    inner_opt: Any = "sgd",
    inner_lr: float = 0.01,
    num_inner_steps: int = 1,
    has_aux: bool = False,
    finite_differences: bool = False,
    fd_eps: float = 1e-5,
) -> dict[str, Any]:
    """Exact, first-order, Reptile and (optionally) finite-difference meta-gradients compared.

    Args:
      loss_fn: ``loss_fn(params, batch)``.
      params: the initial parameters (the point where all are evaluated).
      tasks: a task batch.
      inner_opt, inner_lr, num_inner_steps, has_aux: as in :func:`metajax.maml`.
      finite_differences: also compute central differences of the
        meta-objective, one coordinate at a time (2 x #params evaluations:
        small models only; use float64).
      fd_eps: the finite-difference step.

    Returns:
      ``{"layers": {path: stats}, "overall": stats, "grads": {...}}`` where
      ``stats`` has ``norm_exact``, ``norm_first_order``, ``norm_reptile``
      (scaled by 1 / (inner_lr k)), ``norm_second_order`` (||exact - first||),
      ``cos_exact_first``, ``cos_exact_reptile``, ``rel_err_first``
      (||first - exact|| / ||exact||) and, with finite differences,
      ``rel_err_fd`` (||exact - fd|| / ||fd||).

    >>> import jax.numpy as jnp
    >>> import metajax as mj
    >>> loss = lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2)
    >>> t = mj.Task((jnp.ones((2, 3)), jnp.ones((2, 3))), (jnp.ones((2, 3)), 2 * jnp.ones((2, 3))))
    >>> r = compare_meta_gradients(loss, jnp.array(0.5), t, inner_lr=0.1)
    >>> round(r["overall"]["cos_exact_first"], 3)
    1.0
    """
    kw = {"inner_lr": inner_lr, "has_aux": has_aux}
    exact_l = maml(loss_fn, inner_opt, num_inner_steps, **kw)
    first_l = fomaml(loss_fn, inner_opt, num_inner_steps, **kw)
    rep_l = reptile(loss_fn, inner_opt, num_inner_steps, **kw)
    exact = jax.jit(exact_l.meta_grad)(params, tasks)[0]
    first = jax.jit(first_l.meta_grad)(params, tasks)[0]
    scale = 1.0 / (inner_lr * num_inner_steps)
    reptile_dir = jax.tree_util.tree_map(lambda d: d * scale, jax.jit(rep_l.meta_grad)(params, tasks)[0])
    grads = {"exact": exact, "first_order": first, "reptile": reptile_dir}
    if finite_differences:
        grads["finite_differences"] = finite_difference_gradient(
            lambda p: meta_objective(exact_l, p, tasks), params, fd_eps
        )
    flat = {k: _flat(v) for k, v in grads.items()}

    def stats(sel: Callable[[dict[str, np.ndarray]], np.ndarray]) -> dict[str, float]:
        e, f, r = sel(flat["exact"]), sel(flat["first_order"]), sel(flat["reptile"])
        out = {
            "size": int(e.size),
            "norm_exact": float(np.linalg.norm(e)),
            "norm_first_order": float(np.linalg.norm(f)),
            "norm_reptile": float(np.linalg.norm(r)),
            "norm_second_order": float(np.linalg.norm(e - f)),
            "cos_exact_first": _cos(e, f),
            "cos_exact_reptile": _cos(e, r),
            "rel_err_first": _rel(f, e),
        }
        if finite_differences:
            out["rel_err_fd"] = _rel(e, sel(flat["finite_differences"]))
        return out

    layers = {name: stats(lambda d, name=name: d[name]) for name in flat["exact"]}
    overall = stats(lambda d: np.concatenate(list(d.values())))
    return {"layers": layers, "overall": overall, "grads": grads}


def report_table(report: dict[str, Any]) -> str:
    """Markdown table of :func:`compare_meta_gradients`' per-layer and overall statistics."""
    fd = "rel_err_fd" in report["overall"]
    head = (
        "| parameters | size | ‖exact‖ | ‖first-order‖ | ‖2nd-order term‖ | cos(exact, FO) | "
        "rel. err FO | cos(exact, Reptile) |" + (" rel. err vs FD |" if fd else "")
    )
    lines = [head, "|" + "---|" * (8 + fd)]
    rows = [*report["layers"].items(), ("**overall**", report["overall"])]
    for name, s in rows:
        cells = [
            name,
            str(s["size"]),
            f"{s['norm_exact']:.4g}",
            f"{s['norm_first_order']:.4g}",
            f"{s['norm_second_order']:.4g}",
            f"{s['cos_exact_first']:.4f}",
            f"{s['rel_err_first']:.3g}",
            f"{s['cos_exact_reptile']:.4f}",
        ]
        if fd:
            cells.append(f"{s['rel_err_fd']:.2e}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def one_d_example(w: float = 0.7, alpha: float = 0.05) -> dict[str, float]:
    """A scalar case with a closed form next to metajax's numbers.

    Support loss ``f_s(w) = w^4/4 - c_s w`` (gradient ``w^3 - c_s``, Hessian
    ``3 w^2``), query loss the same with ``c_q``, three tasks, one SGD step
    ``u = w - alpha (w^3 - c_s)``. Exact meta-gradient
    ``mean((1 - 3 alpha w^2)(u^3 - c_q))``; first-order ``mean(u^3 - c_q)``;
    their difference, the second-order term, ``mean(-3 alpha w^2 (u^3 - c_q))``.
    """
    c_s = np.array([1.0, -0.5, 2.0])
    c_q = np.array([0.5, 0.3, -1.0])
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    tasks = Task((jnp.asarray(c_s[:, None], dtype),), (jnp.asarray(c_q[:, None], dtype),))

    def loss(w, batch):
        (c,) = batch
        return jnp.mean(w**4 / 4 - c * w)

    wj = jnp.asarray(w, dtype)
    exact = float(maml(loss, "sgd", 1, inner_lr=alpha).meta_grad(wj, tasks)[0])
    first = float(fomaml(loss, "sgd", 1, inner_lr=alpha).meta_grad(wj, tasks)[0])
    u = w - alpha * (w**3 - c_s)
    q = u**3 - c_q
    return {
        "w": w,
        "alpha": alpha,
        "exact": exact,
        "exact_closed_form": float(np.mean((1 - 3 * alpha * w**2) * q)),
        "first_order": first,
        "first_order_closed_form": float(np.mean(q)),
        "second_order": exact - first,
        "second_order_closed_form": float(np.mean(-3 * alpha * w**2 * q)),
        "dtype": str(np.dtype(dtype)),
    }


def sweep(
    loss_fn: Callable, params: Any, tasks: Task, alphas: list[float], ks: list[int], inner_opt: Any = "sgd"
) -> list[dict[str, Any]]:
    """Overall statistics of :func:`compare_meta_gradients` over a grid of alpha and k."""
    rows = []
    for k in ks:
        for a in alphas:
            o = compare_meta_gradients(loss_fn, params, tasks, inner_opt=inner_opt, inner_lr=a, num_inner_steps=k)[
                "overall"
            ]
            rows.append({"alpha": a, "k": k, **o})
    return rows
