r"""Trust-region policy optimisation as one compiled outer step, for any differentiable loss and KL pair.

:func:`trpo_step` takes a loss to minimise and the KL divergence from the current policy, both as functions of the
parameters (for MAML, of the meta-parameters through the adaptation), and returns the updated parameters:

1. the gradient :math:`g` of the loss (or a given estimate, e.g. a DiCE meta-gradient);
2. the step direction :math:`s \approx (H + \delta I)^{-1} g` by conjugate gradient, with :math:`H` the KL's
   Hessian applied by forward-over-reverse Hessian-vector products (``jax.jvp`` of ``jax.grad``), never formed;
3. the step scaled to the trust region: :math:`\beta = \sqrt{2\,\epsilon / s^\top (H + \delta I) s}`;
4. a backtracking line search on :math:`\theta - \rho^j \beta s`, :math:`j = 0 .. J-1`, accepting the first point
   whose loss is below the current one and whose KL is at most :math:`\epsilon`; the parameters stay where they
   are if none is accepted.

Every loop is a ``lax.while_loop``, so the whole step is jit-able. The defaults are pytorch-maml-rl's (10 CG
iterations, damping 1e-5, 15 line-search steps, ratio 0.8, max KL 0.01).

References:
  Schulman, Levine, Moritz, Jordan, Abbeel (2015). Trust Region Policy Optimization. ICML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metajax._src.base import Params, check_positive_int


class TRPOInfo(NamedTuple):
    """What :func:`trpo_step` reports (scalars).

    Attributes:
      loss_before: the loss at the current parameters.
      loss_after: the loss at the returned parameters.
      kl_after: the KL at the returned parameters (0 when no step was accepted).
      accepted: whether a line-search point was accepted.
      backtracks: the line-search index of the accepted point (``ls_max_steps`` when none was).
      step_norm: the Euclidean norm of the full (unscaled by the line search) step :math:`\\beta s`.
      cg_residual: the squared norm of conjugate gradient's last residual.
    """

    loss_before: jax.Array
    loss_after: jax.Array
    kl_after: jax.Array
    accepted: jax.Array
    backtracks: jax.Array
    step_norm: jax.Array
    cg_residual: jax.Array


def conjugate_gradient(
    matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int = 10, residual_tol: float = 1e-10
) -> tuple[jax.Array, jax.Array]:
    """Solve :math:`A x = b` for a symmetric positive-definite :math:`A` given as ``matvec``, from ``x = 0``.

    At most ``iters`` iterations; stops once the squared residual norm is below ``residual_tol`` (as
    pytorch-maml-rl's ``conjugate_gradient``).

    Returns:
      ``(x, r^T r)``: the solution and the last squared residual norm.

    >>> a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
    >>> x, _ = conjugate_gradient(lambda v: a @ v, jnp.array([1.0, 2.0]), iters=2)
    >>> [round(float(v), 4) for v in x]
    [0.0909, 0.6364]
    """
    iters = check_positive_int("cg_iters", iters)

    def cond(carry):
        i, _, _, _, rdotr = carry
        return (i < iters) & (rdotr >= residual_tol)

    def body(carry):
        i, x, r, p, rdotr = carry
        z = matvec(p)
        v = rdotr / jnp.vdot(p, z)
        x = x + v * p
        r = r - v * z
        new_rdotr = jnp.vdot(r, r)
        p = r + (new_rdotr / rdotr) * p
        return i + 1, x, r, p, new_rdotr

    init = (jnp.int32(0), jnp.zeros_like(b), b, b, jnp.vdot(b, b))
    _, x, _, _, rdotr = jax.lax.while_loop(cond, body, init)
    return x, rdotr


def check_trpo_args(max_kl: Any, cg_iters: Any, cg_damping: Any, ls_max_steps: Any, ls_backtrack_ratio: Any) -> None:
    """Raise ``ValueError`` naming the first bad TRPO setting, before any compute."""

    def number(name, value):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")

    number("max_kl", max_kl)
    if not max_kl > 0:
        raise ValueError(f"max_kl must be > 0 (the trust region's KL bound), got {max_kl!r}.")
    check_positive_int("cg_iters", cg_iters)
    number("cg_damping", cg_damping)
    if not cg_damping >= 0:
        raise ValueError(f"cg_damping must be >= 0, got {cg_damping!r}.")
    check_positive_int("ls_max_steps", ls_max_steps)
    number("ls_backtrack_ratio", ls_backtrack_ratio)
    if not 0 < ls_backtrack_ratio < 1:
        raise ValueError(f"ls_backtrack_ratio must be in (0, 1), got {ls_backtrack_ratio!r}.")


def trpo_step(
    params: Params,
    loss_fn: Callable[[Params], jax.Array],
    kl_fn: Callable[[Params], jax.Array],
    *,
    grad: Params | None = None,
    kl_hvp: Callable[[Params], Params] | None = None,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    ls_max_steps: int = 15,
    ls_backtrack_ratio: float = 0.8,
    cg_residual_tol: float = 1e-10,
) -> tuple[Params, TRPOInfo]:
    """One TRPO update of ``params``.

    Args:
      params: the current parameters (any pytree of float arrays).
      loss_fn: ``loss_fn(params) -> scalar`` to minimise (the negative surrogate); evaluated by the line search.
      kl_fn: ``kl_fn(params) -> scalar``, the mean KL divergence between the current policy (held constant inside)
        and the policy at ``params``; 0 with zero gradient at the current parameters. Its Hessian there is the
        metric of the trust region.
      grad: the gradient to step along; ``None`` uses ``jax.grad(loss_fn)(params)``. Pass an estimate whose
        expectation is right when ``loss_fn``'s own gradient is not (a DiCE meta-gradient with a ratio surrogate
        for the line search).
      kl_hvp: ``kl_hvp(v) -> H v`` for a pytree ``v`` like ``params``: the KL's Hessian at ``params`` applied to
        ``v``, when there is a cheaper way than the default (``None``): the forward-over-reverse product of
        ``kl_fn``. :func:`~metajax._src.rl.maml_rl.maml_trpo_step` passes the Gauss-Newton form, the same matrix
        at the current parameters.
      max_kl: the trust region's radius :math:`\\epsilon` (> 0).
      cg_iters, cg_damping: conjugate gradient's iterations and the damping :math:`\\delta` added to the KL
        Hessian.
      ls_max_steps, ls_backtrack_ratio: the line search's number of points and shrink factor :math:`\\rho`.
      cg_residual_tol: conjugate gradient stops below this squared residual norm.

    Returns:
      ``(new_params, info)`` with a :class:`TRPOInfo`.

    Raises:
      ValueError: ``max_kl <= 0``, ``cg_iters`` or ``ls_max_steps`` below 1, a negative damping, or a ratio outside
        (0, 1).

    >>> target = jnp.array([1.0, -2.0])
    >>> loss = lambda p: jnp.sum((p - target) ** 2)
    >>> kl = lambda p: 0.5 * jnp.sum(p ** 2)  # the KL of a unit Gaussian policy whose mean moved from 0 to p
    >>> new, info = jax.jit(lambda p: trpo_step(p, loss, kl, max_kl=0.01))(jnp.zeros(2))
    >>> round(float(kl(new)), 4), bool(info.accepted)
    (0.01, True)
    """
    check_trpo_args(max_kl, cg_iters, cg_damping, ls_max_steps, ls_backtrack_ratio)
    flat, unravel = ravel_pytree(params)
    flat_loss = lambda x: loss_fn(unravel(x))  # noqa: E731
    flat_kl = lambda x: kl_fn(unravel(x))  # noqa: E731
    loss_before = flat_loss(flat)
    g = jax.grad(flat_loss)(flat) if grad is None else ravel_pytree(grad)[0].astype(flat.dtype)
    kl_grad = jax.grad(flat_kl)

    def fisher_vector(v):
        if kl_hvp is not None:
            return ravel_pytree(kl_hvp(unravel(v)))[0].astype(flat.dtype) + cg_damping * v
        # Forward-over-reverse Hessian-vector product of the KL: one forward-mode pass over its gradient.
        return jax.jvp(kl_grad, (flat,), (v,))[1] + cg_damping * v

    direction, residual = conjugate_gradient(fisher_vector, g, cg_iters, cg_residual_tol)
    shs = 0.5 * jnp.vdot(direction, fisher_vector(direction))
    # A zero gradient (or a direction of zero curvature) leaves the parameters where they are.
    scale = jnp.where(shs > 0, jnp.sqrt(max_kl / jnp.where(shs > 0, shs, 1.0)), 0.0)
    full_step = scale * direction

    def evaluate(j):
        candidate = flat - ls_backtrack_ratio ** j.astype(flat.dtype) * full_step
        return candidate, flat_loss(candidate), flat_kl(candidate)

    def cond(carry):
        j, accepted, *_ = carry
        return (j < ls_max_steps) & ~accepted

    def body(carry):
        j, _, _, _, _ = carry
        candidate, loss, kl = evaluate(j)
        ok = (loss < loss_before) & (kl <= max_kl) & jnp.all(jnp.isfinite(candidate))
        return j + jnp.where(ok, 0, 1), ok, candidate, loss, kl

    zero = jnp.zeros((), loss_before.dtype)
    init = (jnp.int32(0), jnp.array(False), flat, loss_before, zero)
    j, accepted, candidate, loss, kl = jax.lax.while_loop(cond, body, init)
    new_flat = jnp.where(accepted, candidate, flat)
    info = TRPOInfo(
        loss_before=loss_before,
        loss_after=jnp.where(accepted, loss, loss_before),
        kl_after=jnp.where(accepted, kl, zero),
        accepted=accepted,
        backtracks=j,
        step_norm=jnp.linalg.norm(full_step),
        cg_residual=residual,
    )
    return unravel(new_flat), info
