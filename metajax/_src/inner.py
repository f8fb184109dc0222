"""The inner loop: k steps of any Optax optimiser on a task's support batch.

How gradients cross the inner loop is one explicit object, a subclass of
:class:`AbstractMetaGradient`:

* :class:`Exact` differentiates the unrolled ``lax.scan``, optimiser state
  included (second-order MAML). ``remat=True`` recomputes each inner step in
  the backward pass instead of storing it.
* :class:`FirstOrder` puts ``stop_gradient`` on the inner gradients (FOMAML):
  with SGD, momentum or Adam the adapted parameters then depend on the initial
  ones through the identity only.

* :class:`~metajax._src.implicit.Implicit` (iMAML, its own module) overrides
  :meth:`AbstractMetaGradient.inner_loop`: it solves a proximally regularised
  inner problem and differentiates its solution implicitly.

The algorithms only call ``inner_loop`` and never look inside; a strategy is
chosen by name or instance with :func:`~metajax._src.strategy.make_meta_gradient`.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metajax._src.base import Batch, InnerResult, Params, check_learning_rate, check_positive_int

# ---------------------------------------------------------------------------
# Inner optimisers with a safe default for differentiated loops.
# ---------------------------------------------------------------------------

SAFE_EPS_ROOT = 1e-12
"""Constant added inside Adam's square root in differentiated inner loops.

d sqrt(v)/dv is infinite at v = 0 and an inner-gradient entry that is exactly
zero (a dead ReLU unit) makes v = 0, so exact meta-gradients through Adam are
NaN (inf * 0) without it. 1e-12 changes the forward update only for entries
with |g| below ~1e-6, where Adam's own ``eps`` (1e-8) already dominates.
"""


def adam(
    learning_rate: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = SAFE_EPS_ROOT
) -> optax.GradientTransformation:
    """Adam for inner loops: ``optax.adam`` with a non-zero ``eps_root``.

    Args:
      learning_rate: step size (float, schedule, or traced scalar).
      b1, b2, eps: as in ``optax.adam``.
      eps_root: constant inside the square root; keep it > 0 when the inner
        loop is differentiated (exact MAML) or meta-gradients become NaN as
        soon as an inner-gradient entry is exactly zero.

    Returns:
      An ``optax.GradientTransformation``.

    >>> opt = adam(0.01)
    >>> import jax.numpy as jnp
    >>> upd, _ = opt.update(jnp.zeros(3), opt.init(jnp.zeros(3)))
    """
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)


OPTIMIZERS = ("sgd", "momentum", "adam")
INNER_OPTIMIZERS = OPTIMIZERS


def make_optimizer(
    name: str,
    learning_rate: Any,
    *,
    momentum: float = 0.9,
    inner_loop: bool = False,
    argnames: tuple[str, str] = ("name", "learning_rate"),
) -> optax.GradientTransformation:
    """The Optax optimiser a name stands for: the one factory behind the inner, outer, pre-training and fine-tuning
    optimisers of metajax.

    Args:
      name: ``"sgd"``, ``"momentum"`` (SGD with ``momentum``) or ``"adam"``.
      learning_rate: a number >= 0 or an Optax schedule.
      momentum: the momentum coefficient of ``"momentum"``.
      inner_loop: the optimiser of a differentiated inner loop: ``"adam"`` is then :func:`adam`, with a
        non-zero ``eps_root`` (exact meta-gradients through ``optax.adam`` are NaN at zero gradients).
      argnames: the names of the two arguments in error messages (e.g. ``("outer.opt", "outer.lr")`` for a
        config section).

    Raises:
      ValueError: an unknown name, or a negative or non-finite learning rate.

    >>> make_optimizer("momentum", 0.1)  # doctest: +ELLIPSIS
    GradientTransformationExtraArgs(...)
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"{argnames[0]} must be one of {OPTIMIZERS}, got {name!r}.")
    check_learning_rate(argnames[1], learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=momentum)
    return adam(learning_rate) if inner_loop else optax.adam(learning_rate)


def make_inner_opt(
    inner_opt: str | optax.GradientTransformation | None, inner_lr: Any, momentum: float = 0.9
) -> optax.GradientTransformation:
    """Build an inner optimiser from a name (:func:`make_optimizer`), or pass a transformation through.

    Args:
      inner_opt: ``None`` or ``"sgd"`` (plain gradient steps), ``"momentum"``,
        ``"adam"`` (with the safe ``eps_root``), or any
        ``optax.GradientTransformation`` (then ``inner_lr`` is ignored).
      inner_lr: learning rate for the named optimisers.
      momentum: momentum coefficient for ``"momentum"``.

    Raises:
      ValueError: unknown name, or a negative / non-finite ``inner_lr``.
    """
    if isinstance(inner_opt, optax.GradientTransformation):
        return inner_opt
    if inner_opt is not None and (not isinstance(inner_opt, str) or inner_opt not in OPTIMIZERS):
        raise ValueError(
            f"inner_opt must be one of {OPTIMIZERS} or an optax.GradientTransformation, got {inner_opt!r}."
        )
    return make_optimizer(
        inner_opt or "sgd", inner_lr, momentum=momentum, inner_loop=True, argnames=("inner_opt", "inner_lr")
    )


def has_nan_derivative_at_zero_gradient(opt: optax.GradientTransformation) -> bool:
    """Whether d(update)/d(gradient) is non-finite where a gradient entry is zero.

    True for ``optax.adam`` (and relatives) with ``eps_root=0``: exact
    meta-gradients through such an inner loop turn NaN as soon as one
    inner-gradient entry is exactly zero. The probe differentiates the first
    update at the gradient (0, 1): one zero entry, as a dead ReLU unit gives,
    and a non-zero one (an all-zero gradient would also flag harmless global
    norm clipping). Transformations the probe cannot run on a plain vector are
    reported as fine.
    """
    p = jnp.zeros((2,), jnp.float32)

    def first_update(g):
        updates, _ = opt.update(g, opt.init(p), p)
        return jnp.sum(updates)

    try:
        d = jax.grad(first_update)(jnp.array([0.0, 1.0], jnp.float32))
    except Exception:  # noqa: BLE001 - a structured transform that needs its own pytree
        return False
    return not bool(jnp.all(jnp.isfinite(d)))


def warn_if_unsafe_for_exact(opt: optax.GradientTransformation, stacklevel: int = 3) -> None:
    """Warn when exact meta-gradients through ``opt`` will be NaN at zero inner gradients."""
    if has_nan_derivative_at_zero_gradient(opt):
        warnings.warn(
            "inner_opt has an infinite derivative at zero gradients (optax.adam and relatives with eps_root=0): "
            "exact meta-gradients will be NaN whenever an inner-gradient entry is exactly 0 (dead ReLU units). "
            f"Use inner_opt='adam' or metajax.adam(...), which set eps_root={SAFE_EPS_ROOT}, or pass eps_root > 0.",
            UserWarning,
            stacklevel=stacklevel,
        )


# ---------------------------------------------------------------------------
# Selecting the adapted subtree (ANIL, or any user-chosen subset).
# ---------------------------------------------------------------------------


def path_str(path: tuple[Any, ...]) -> str:
    """Render a pytree key path as ``a/b/c``."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(str(k.name))
        else:
            parts.append(str(k))
    return "/".join(parts)


Selector = str | Callable[[str, Any], bool]


def select_mask(params: Params, selector: Selector, argname: str = "head") -> Any:
    """Boolean pytree: which leaves of ``params`` the selector picks.

    Args:
      params: parameter pytree.
      selector: a regular expression searched in each leaf's path
        (``"Dense_2"`` or ``"^head/"``), or ``fn(path, leaf) -> bool``.
      argname: the argument name used in error messages.

    Raises:
      ValueError: the selector matches no leaf, or matches every leaf.
    """
    if isinstance(selector, str):
        pattern = re.compile(selector)

        def pick(path, leaf):
            del leaf
            return bool(pattern.search(path_str(path)))
    elif callable(selector):

        def pick(path, leaf):
            return bool(selector(path_str(path), leaf))
    else:
        raise ValueError(f"{argname} must be a regular expression or a callable, got {selector!r}.")
    mask = jax.tree_util.tree_map_with_path(pick, params)
    picked = jax.tree_util.tree_leaves(mask)
    paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if not any(picked):
        raise ValueError(f"{argname}={selector!r} matches no parameter; expected at least one of the paths {paths}.")
    return mask


def partition(params: Params, mask: Any) -> tuple[Params, Params]:
    """Split ``params`` into (selected, rest); the missing leaves are ``None``."""
    sel = jax.tree_util.tree_map(lambda m, p: p if m else None, mask, params)
    rest = jax.tree_util.tree_map(lambda m, p: None if m else p, mask, params)
    return sel, rest


def combine(a: Params, b: Params) -> Params:
    """Inverse of :func:`partition`."""
    return jax.tree_util.tree_map(lambda x, y: y if x is None else x, a, b, is_leaf=lambda x: x is None)


# ---------------------------------------------------------------------------
# How gradients cross the inner loop.
# ---------------------------------------------------------------------------


def support_loss(loss_fn: Callable, has_aux: bool, stateful: bool) -> Callable:
    """The support loss in the one signature of the inner scan.

    That signature is ``(params, state, batch, step, key) -> (loss, (state, aux))``.

    Args:
      loss_fn: ``loss_fn(params, batch)`` (``stateful=False``) or ``loss_fn(params, state, batch, step, key)``
        (``stateful=True``), returning the loss, or ``(loss, aux)`` / ``(loss, (new_state, aux))`` with
        ``has_aux``; a loss with state returns ``(loss, new_state)`` without ``has_aux``.
      has_aux: whether ``loss_fn`` returns auxiliary metrics.
      stateful: which of the two signatures ``loss_fn`` has.
    """
    if not stateful:

        def plain(params, state, batch, step, key):
            del step, key
            out = loss_fn(params, batch)
            if not has_aux:
                return out, (state, {})
            if not (isinstance(out, tuple) and len(out) == 2):
                got = f"a {type(out).__name__}" + (f" of shape {out.shape}" if hasattr(out, "shape") else "")
                raise ValueError(
                    f"has_aux=True: loss_fn must return a pair (loss, aux), got {got}. Return (loss, {{}}) or pass "
                    "has_aux=False."
                )
            return out[0], (state, out[1])

        return plain

    def with_state(params, state, batch, step, key):
        out = loss_fn(params, state, batch, step, key)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(
                "a loss_fn with state must return (loss, new_state) (or (loss, (new_state, aux)) with has_aux=True), "
                f"got a {type(out).__name__}."
            )
        loss, rest = out
        if has_aux:
            if not (isinstance(rest, tuple) and len(rest) == 2):
                raise ValueError("has_aux=True: a loss_fn with state must return (loss, (new_state, aux)).")
            return loss, rest
        return loss, (rest, {})

    return with_state


def minibatch(batch: Batch, t: jax.Array, batch_size: int | None) -> Batch:
    """Step ``t``'s inner minibatch: examples ``t*b .. t*b+b-1`` modulo the batch size (all of it if ``b`` is None)."""
    if batch_size is None:
        return batch
    n = jax.tree_util.tree_leaves(batch)[0].shape[0]
    idx = (t * batch_size + jnp.arange(batch_size)) % n
    return jax.tree_util.tree_map(lambda x: x[idx], batch)


def with_final(records: Any, eval_fn: Callable[[Params], Any] | None, result: Params) -> Any:
    """The per-step ``eval_fn`` records with the value at the adapted parameters appended (None without eval_fn)."""
    if eval_fn is None:
        return None
    last = eval_fn(result)
    return jax.tree_util.tree_map(lambda r, f: jnp.concatenate([r, f[None]], axis=0), records, last)


@dataclasses.dataclass(frozen=True)
class AbstractMetaGradient:
    """How meta-gradients cross the inner loop. Subclasses are final.

    The default :meth:`inner_loop` unrolls ``num_steps`` optimiser steps in a
    ``lax.scan``; subclasses change what is differentiated (``grad_hook``),
    what is stored (``remat``) or replace the loop altogether.
    """

    name = "abstract"
    supports_state = True
    """Whether the strategy can adapt a loss with model state or per-step keys (:func:`maml_plus_plus`, meta-RL)."""

    def grad_hook(self, grads: Params) -> Params:
        """Applied to every inner gradient before the optimiser sees it."""
        return grads

    def wrap_step(self, step: Callable) -> Callable:
        """Applied to the scan body (e.g. rematerialisation)."""
        return step

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
        after_step: Callable[[Params, Any, jax.Array, Any], Any] | None = None,
        batch_size: int | None = None,
        state_gradient: bool = False,
    ) -> InnerResult:
        """Run ``num_steps`` steps of ``inner_opt`` on ``loss_fn`` over ``batch``: the one inner scan.

        Step ``t`` computes ``loss_fn(params, state, batch_t, t, k)`` with ``k = fold_in(key, 2 t)`` (``None``
        without a key), takes one ``inner_opt`` step on its gradient (through :meth:`grad_hook`, so first-order
        strategies stay first order) and carries the returned model state to the next step. A model without
        state passes ``state=None`` and gets ``None`` back. The state is not differentiated: running statistics
        are not parameters, so ``stop_gradient`` cuts it from the meta-gradient (what a model *does* with its
        state, e.g. normalising with running statistics, is still differentiated with respect to the
        parameters).

        Args:
          loss_fn: ``loss_fn(params, state, batch, step, key) -> (loss, (new_state, aux))``
            (:func:`support_loss` turns a plain ``loss_fn(params, batch)`` into one).
          inner_opt: any ``optax.GradientTransformation``.
          params: the initial parameters.
          batch: the support batch (leading example axis).
          num_steps: number of inner steps, a Python int >= 1.
          state: the initial model state, or ``None``.
          key: the task's PRNG key, or ``None``.
          mask: optional boolean pytree; only ``True`` leaves are adapted.
          eval_fn: optional ``eval_fn(params) -> pytree`` recorded before each
            step and after the last (e.g. the query loss, for adaptation
            curves): leading axis ``num_steps + 1`` in ``InnerResult.trace``.
          after_step: optional ``after_step(params, state, t, k) -> pytree`` evaluated after step ``t`` on the
            updated parameters and state with ``k = fold_in(key, 2 t + 1)``; its values are stacked along a
            leading axis of length ``num_steps`` into ``InnerResult.trace`` (with ``eval_fn`` as well, the trace
            is the pair ``(eval_fn records, after_step records)``) and are differentiable (the multi-step loss
            of MAML++ is the query loss recorded this way).
          batch_size: ``None`` (every step sees the whole batch) or ``b``: step
            ``t`` sees examples ``t*b .. t*b+b-1`` (modulo the batch size),
            i.e. consecutive minibatches cycling through the batch (Reptile's
            inner minibatches; order the examples so that consecutive ones mix
            classes).
          state_gradient: let meta-gradients flow through the model state from step to step (through
            :meth:`grad_hook`, so first-order strategies still cut it). For a state that is a function of the
            parameters whose derivative matters, such as the DiCE log-likelihood weight of sampled rollouts
            (:mod:`metajax.rl`); running statistics keep the default ``False``.

        Returns:
          An :class:`InnerResult`.
        """
        num_steps = check_positive_int("num_inner_steps", num_steps)
        if batch_size is not None:
            batch_size = check_positive_int("inner_batch_size", batch_size)
        adapted, frozen = (params, None) if mask is None else partition(params, mask)

        def full(p):
            return p if mask is None else combine(p, frozen)

        def cut(state):
            return self.grad_hook(state) if state_gradient else jax.lax.stop_gradient(state)

        def key_at(i):
            return None if key is None else jax.random.fold_in(key, i)

        def step(carry, t):
            p, opt_state, s = carry

            def inner_loss(q):
                loss, (new_state, _) = loss_fn(full(q), s, minibatch(batch, t, batch_size), t, key_at(2 * t))
                return loss, new_state

            (loss, new_state), grads = jax.value_and_grad(inner_loss, has_aux=True)(p)
            # The state keeps its dtypes (a float32 statistic updated from float64 activations stays float32).
            s = jax.tree_util.tree_map(lambda n, o: jnp.asarray(n).astype(jnp.result_type(o)), new_state, s)
            s = cut(s)
            grads = self.grad_hook(grads)
            record = eval_fn(full(p)) if eval_fn is not None else None
            updates, opt_state = inner_opt.update(grads, opt_state, p)
            p = optax.apply_updates(p, updates)
            after = after_step(full(p), s, t, key_at(2 * t + 1)) if after_step is not None else None
            return (p, opt_state, s), (loss, record, after)

        carry = (adapted, inner_opt.init(adapted), state)
        (p, _, state), (losses, records, afters) = jax.lax.scan(self.wrap_step(step), carry, jnp.arange(num_steps))
        result = full(p)
        trace = with_final(records, eval_fn, result)
        if after_step is not None:
            trace = afters if eval_fn is None else (trace, afters)
        return InnerResult(result, losses, trace, state)


@dataclasses.dataclass(frozen=True)
class Exact(AbstractMetaGradient):
    """Exact (second-order) meta-gradients through the unrolled inner loop.

    Args:
      remat: recompute each inner step during the backward pass
        (``jax.checkpoint``) instead of storing its intermediates: memory
        grows with the inner-step carry only, at about one extra forward pass
        per step.
      policy: an optional ``jax.checkpoint_policies`` policy used with
        ``remat`` (what may be saved instead of recomputed).

    References:
      Finn, Abbeel, Levine (2017). Model-Agnostic Meta-Learning for Fast
      Adaptation of Deep Networks.
    """

    remat: bool = False
    policy: Callable | None = None
    name = "exact"

    def wrap_step(self, step):
        if not self.remat:
            return step
        return jax.checkpoint(step, policy=self.policy, prevent_cse=False)


@dataclasses.dataclass(frozen=True)
class FirstOrder(AbstractMetaGradient):
    """First-order meta-gradients: ``stop_gradient`` on every inner gradient.

    The inner-loop Jacobian becomes the identity for SGD, momentum and Adam
    (transforms that read the parameters, such as weight decay, still pass
    gradient through that term), so the MAML meta-gradient reduces to the
    query gradient at the adapted parameters (FOMAML). Learned inner learning
    rates (Meta-SGD) still receive gradients through the update's scale.

    References:
      Nichol, Achiam, Schulman (2018). On First-Order Meta-Learning Algorithms.
    """

    name = "first_order"

    def grad_hook(self, grads):
        return jax.lax.stop_gradient(grads)
