"""Implicit meta-gradients (iMAML): differentiate the inner problem's solution, not its path.

:class:`Implicit` is the gradient strategy of Rajeswaran, Finn, Kakade & Levine, "Meta-Learning with Implicit
Gradients" (NeurIPS 2019): the inner loop solves a proximally regularised problem and the meta-gradient solves
a linear system with Hessian-vector products by :func:`conjugate_gradient`, so its memory does not grow with the
number of inner steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax._src.base import Batch, InnerResult, Params, check_learning_rate, check_positive_int
from metajax._src.inner import AbstractMetaGradient, combine, minibatch, partition, with_final


def conjugate_gradient(matvec: Callable, b: Any, tol: float, maxiter: int) -> Any:
    """Solve ``matvec(x) = b`` for a symmetric positive-definite operator on pytrees.

    Starts from zero and stops when ``|r| <= tol |b|`` or after ``maxiter``
    iterations (``jax.scipy.sparse.linalg.cg`` with ``atol=0``). Written out
    because that function's ``device_put`` of its operands fails under
    ``vmap`` when parameters carry their batch axis anywhere but first, as
    per-task convolution kernels do inside a vmapped meta-gradient.
    """
    tree = jax.tree_util

    def vdot(a, c):
        return sum(jnp.vdot(x, y) for x, y in zip(tree.tree_leaves(a), tree.tree_leaves(c), strict=True))

    def axpy(alpha, x, y):
        return tree.tree_map(lambda u, v: alpha.astype(u.dtype) * u + v, x, y)

    x0 = tree.tree_map(jnp.zeros_like, b)
    rr0 = vdot(b, b)
    bound = jnp.square(tol) * rr0

    def cond(state):
        _, _, _, rr, k = state
        return (rr > bound) & (k < maxiter)

    def body(state):
        x, r, p, rr, k = state
        ap = matvec(p)
        alpha = rr / vdot(p, ap)
        x = axpy(alpha, p, x)
        r = axpy(-alpha, ap, r)
        rr_new = vdot(r, r)
        p = axpy(rr_new / rr, p, r)
        return x, r, p, rr_new, k + 1

    x, *_ = jax.lax.while_loop(cond, body, (x0, b, b, rr0, jnp.asarray(0)))
    return x


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


@dataclasses.dataclass(frozen=True)
class Implicit(AbstractMetaGradient):
    r"""Implicit meta-gradients (iMAML): differentiate the inner problem's solution, not its path.

    The inner loop minimises the proximally regularised support loss
    :math:`\hat L(\phi) = L^s(\phi) + \tfrac{\lambda}{2}\lVert\phi-\theta\rVert^2`
    with ``num_steps`` steps of the inner optimiser from :math:`\phi=\theta`.
    At a stationary point :math:`\phi^*` the implicit function theorem gives
    :math:`d\phi^*/d\theta = (I + H/\lambda)^{-1}` with :math:`H=\nabla^2 L^s(\phi^*)`,
    so the meta-gradient is :math:`(I + H/\lambda)^{-1}\nabla L^q(\phi^*)`,
    solved by conjugate gradient on Hessian-vector products
    (``jax.scipy.sparse.linalg.cg`` in a ``jax.custom_vjp``). Nothing of the inner
    trajectory is stored: memory does not grow with ``num_steps``.

    Exact when the inner loop has converged to a stationary point (the
    gradient is the derivative of :math:`\phi^*(\theta)`, not of the
    ``num_steps``-step iterate) and CG has converged; CG assumes
    :math:`H + \lambda I` positive definite, so pick ``lam`` above the most
    negative curvature.

    Args:
      lam: proximal regularisation strength :math:`\lambda > 0`.
      cg_steps: conjugate-gradient iterations (each one Hessian-vector product).
      cg_tol: relative residual at which CG stops early (0: always ``cg_steps``).

    References:
      Rajeswaran, Finn, Kakade, Levine (2019). Meta-Learning with Implicit
      Gradients. NeurIPS.
    """

    lam: float = 1.0
    cg_steps: int = 5
    cg_tol: float = 0.0
    name = "implicit"
    supports_state = False

    def __post_init__(self):
        check_learning_rate("lam", self.lam)
        if not float(self.lam) > 0:
            raise ValueError(f"lam must be > 0 (the proximal regularisation strength), got {self.lam!r}.")
        check_positive_int("cg_steps", self.cg_steps)
        if not (isinstance(self.cg_tol, (int, float)) and 0 <= self.cg_tol < 1):
            raise ValueError(f"cg_tol must be a number in [0, 1), got {self.cg_tol!r}.")

    def inner_loop(
        self,
        loss_fn: Callable,
        inner_opt: optax.GradientTransformation,
        params: Params,
        batch: Batch,
        num_steps: int,
        *,
        state: Any = None,
        key: Any = None,
        mask: Any = None,
        eval_fn: Callable[[Params], Any] | None = None,
        after_step: Callable | None = None,
        batch_size: int | None = None,
        state_gradient: bool = False,
    ) -> InnerResult:
        """As :meth:`AbstractMetaGradient.inner_loop`, on the proximal objective, differentiated implicitly.

        ``losses`` records the plain support loss (without the proximal term)
        before each step, like the other inner loops. The stationarity
        condition uses the whole support batch even when ``batch_size`` sets
        inner minibatches.

        Raises:
          ValueError: a model state or ``after_step`` was given: the implicit gradient assumes a stationary
            point of a loss without state.
        """
        del state_gradient  # no state to differentiate: a state is refused below
        if state is not None or after_step is not None:
            raise ValueError(
                "gradient=Implicit() (iMAML) does not support models with state or per-step objectives: its "
                "meta-gradient assumes the inner problem is a fixed loss of the parameters. Use gradient='exact', "
                "'exact_remat' or 'first_order'."
            )

        def plain_loss(p, data):  # the (params, batch) view of the unified loss
            loss, (_, aux) = loss_fn(p, None, data, 0, key)
            return loss, aux

        num_steps = check_positive_int("num_inner_steps", num_steps)
        if batch_size is not None:
            batch_size = check_positive_int("inner_batch_size", batch_size)
        theta, frozen = (params, None) if mask is None else partition(params, mask)
        lam = self.lam

        def with_frozen(p, fr):
            return p if mask is None else combine(p, fr)

        def stationarity(phi, th, fr, data):
            # gradient of the proximal objective; its root is phi*(theta)
            g = jax.grad(lambda p: plain_loss(with_frozen(p, fr), data)[0])(phi)
            return jax.tree_util.tree_map(lambda gi, x, t: gi + lam * (x - t), g, phi, th)

        def run_solver(th, fr, data_all):
            def reg_loss(p, t):
                plain = plain_loss(with_frozen(p, fr), minibatch(data_all, t, batch_size))[0]
                sq = [
                    jnp.sum(jnp.square(a - b))
                    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(th), strict=True)
                ]
                return plain + 0.5 * lam * sum(sq), plain

            def step(carry, t):
                p, opt_state = carry
                (_, plain), grads = jax.value_and_grad(reg_loss, has_aux=True)(p, t)
                record = eval_fn(with_frozen(p, fr)) if eval_fn is not None else None
                updates, opt_state = inner_opt.update(grads, opt_state, p)
                return (optax.apply_updates(p, updates), opt_state), (plain, record)

            (p, _), aux = jax.lax.scan(step, (th, inner_opt.init(th)), jnp.arange(num_steps))
            return p, aux

        @jax.custom_vjp
        def solution(th, fr, data):
            return run_solver(th, fr, data)

        def solution_fwd(th, fr, data):
            phi, aux = run_solver(th, fr, data)
            return (phi, aux), (phi, th, fr, data)

        def solution_bwd(res, cotangents):
            phi, th, fr, data = res
            g, _ = cotangents  # the losses / records carry no gradient

            # (H + lam I) v as a vector-Jacobian product of the stationarity map
            # (reverse-over-reverse; its Jacobian is symmetric), linearised once
            # for all CG iterations. Forward mode would not do: models may use
            # custom-VJP layers (conv4's batch norm), which have no JVP.
            _, hvp = jax.vjp(lambda p: stationarity(p, th, fr, data), phi)

            def matvec(v):
                return hvp(v)[0]

            u = conjugate_gradient(matvec, g, self.cg_tol, self.cg_steps)
            # d phi* = -(dF/dphi)^{-1} dF/d(theta, frozen); dF/dtheta = -lam I
            _, vjp = jax.vjp(lambda t, f: stationarity(phi, t, f, data), th, fr)
            d_th, d_fr = jax.tree_util.tree_map(jnp.negative, vjp(u))
            d_data = jax.tree_util.tree_map(_zero_cotangent, data)
            return d_th, d_fr, d_data

        solution.defvjp(solution_fwd, solution_bwd)
        phi, (losses, records) = solution(theta, frozen, batch)
        result = with_frozen(phi, frozen)
        return InnerResult(result, losses, with_final(records, eval_fn, result))
