"""Meta-gradient variance from task, support-set and query-set sampling (a nested random-effects decomposition).

A single-task meta-gradient g(tau, S, Q) is random through the task tau, its
support set S and its query set Q (S and Q independent given tau). By the law
of total variance (variances are traces of covariance matrices, E||g - Eg||^2)::

    Var g = Var_tau E[g | tau]                      task component
          + E_tau Var_S E[g | tau, S]               support component
          + E_tau E_S Var_Q [g | tau, S]            query component

:func:`variance_decomposition` estimates the three terms without bias from a
nested sample (T tasks x S support draws x Q query draws per task, supports and queries
crossed within a task), as a two-way random-effects ANOVA per task.

Support noise reaches the meta-gradient through the inner step u = w - alpha
grad f_s(S): to first order it moves u by alpha times the support-gradient
noise, which the query loss's curvature turns into gradient noise, so the
support component grows like alpha^2 and with curvature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metajax._src.base import Task, check_positive_int
from metajax._src.data import sinusoid


def components(g: np.ndarray) -> dict[str, float]:
    """Unbiased task / support / query variance components of ``g`` shaped ``(T, S, Q, P)``.

    The design is crossed within each task: query draw ``q`` is the same set
    for every support draw ``s`` of task ``t`` (common random numbers), so the
    query noise does not blur the between-support comparison, which is what
    makes the small support component measurable. Per task it is a two-way
    random-effects ANOVA, g_tsq = m_t + a_ts + b_tq + e_tsq:

    * support = E_tau Var_S E_Q[g|tau,S] = Var(a), estimated as the
      between-support mean square minus residual / Q;
    * query = E Var_Q[g|tau,S] = Var(b) + Var(e);
    * task = Var_tau E[g|tau], the between-task variance of task means minus
      what support and query sampling contribute to them.
    """
    g = np.asarray(g, np.float64)
    t, s, q, _ = g.shape
    if min(t, s, q) < 2:
        raise ValueError(f"need at least 2 tasks, supports and queries, got (T, S, Q) = {(t, s, q)}.")
    g_ts = g.mean(axis=2)  # (T, S): averaged over query draws
    g_tq = g.mean(axis=1)  # (T, Q): averaged over support draws
    g_t = g_ts.mean(axis=1)  # (T,)
    g_all = g_t.mean(axis=0)
    resid = g - g_ts[:, :, None] - g_tq[:, None] + g_t[:, None, None]
    var_e = np.sum(resid**2) / (t * (s - 1) * (q - 1))
    ms_s = np.sum((g_ts - g_t[:, None]) ** 2) / (t * (s - 1))  # = Var(a) + Var(e)/Q
    ms_q = np.sum((g_tq - g_t[:, None]) ** 2) / (t * (q - 1))  # = Var(b) + Var(e)/S
    var_a = ms_s - var_e / q
    var_b = ms_q - var_e / s
    between_t = np.sum((g_t - g_all) ** 2) / (t - 1)  # = task + Var(a)/S + Var(b)/Q + Var(e)/(SQ)
    task = between_t - var_a / s - var_b / q - var_e / (s * q)
    return {
        "task": float(task),
        "support": float(var_a),
        "query": float(var_b + var_e),
        "total": float(task + var_a + var_b + var_e),
        "mean_norm": float(np.linalg.norm(g_all)),
    }


def variance_decomposition(
    task_direction: Callable[[Any, Task], tuple[Any, Any]],
    params: Any,
    nested_tasks: Task,
    chunk: int | None = 64,
) -> dict[str, float]:
    """Estimate the task, support and query components of the meta-gradient variance.

    Args:
      task_direction: a learner's ``task_direction(meta_params, task)``.
      params: where the meta-gradients are taken.
      nested_tasks: a :class:`Task` whose leaves have leading axes
        ``(T, S, Q)``: task ``t``, its support draw ``s`` (the same across
        ``q``) and query draw ``q`` (the same across ``s``).
      chunk: tasks evaluated together.

    Returns:
      ``{"task", "support", "query", "total", "mean_norm"}``.
    """
    t, s, q = jax.tree_util.tree_leaves(nested_tasks)[0].shape[:3]
    flat = jax.tree_util.tree_map(lambda x: x.reshape((t * s * q, *x.shape[3:])), nested_tasks)

    @jax.jit
    def grads(p, tasks):
        return jax.lax.map(lambda task: ravel_pytree(task_direction(p, task)[0])[0], tasks, batch_size=chunk)

    g = np.asarray(grads(params, flat)).reshape(t, s, q, -1)
    return components(g)


def nested_sinusoid_tasks(
    key: jax.Array, num_tasks: int, num_supports: int, num_queries: int, shots: int = 10, query_shots: int = 10
) -> Task:
    """Sinusoid tasks with leaves shaped ``(T, S, Q, points, 1)`` for :func:`variance_decomposition`."""
    for name, v in (("num_tasks", num_tasks), ("num_supports", num_supports), ("num_queries", num_queries)):
        check_positive_int(name, v)
    kp, ks, kq = jax.random.split(key, 3)
    tp = sinusoid.sample_task_params(kp, num_tasks)
    lo, hi = sinusoid.MAML_SINUSOID.x_range
    xs = jax.random.uniform(ks, (num_tasks, num_supports, shots, 1), minval=lo, maxval=hi)
    xq = jax.random.uniform(kq, (num_tasks, num_queries, query_shots, 1), minval=lo, maxval=hi)
    amp, phase = tp.amplitude, tp.phase

    def f(x):
        shape = (num_tasks,) + (1,) * (x.ndim - 1)
        return amp.reshape(shape) * jnp.sin(x - phase.reshape(shape))

    xs_b = jnp.broadcast_to(xs[:, :, None], (num_tasks, num_supports, num_queries, shots, 1))
    xq_b = jnp.broadcast_to(xq[:, None], (num_tasks, num_supports, num_queries, query_shots, 1))
    return Task((xs_b, f(xs_b)), (xq_b, f(xq_b)))


def fit_exponent(x: list[float], y: list[float]) -> float:
    """Slope of log y against log x (least squares): y ~ x^slope."""
    lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
    return float(np.polyfit(lx, ly, 1)[0])
