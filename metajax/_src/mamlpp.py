"""MAML++: MAML with learned per-step rates, a multi-step loss, derivative-order annealing and model state.

The techniques of Antoniou, Edwards & Storkey, "How to train your MAML" (ICLR 2019), each an independent option of
:func:`maml_plus_plus`:

* **LSLR** (``lslr=True``): learned per-layer, per-step inner learning rates, meta-learned with the model;
* **MSL** (``msl_anneal_steps``): the meta-objective is a weighted sum of the query loss after *every* inner step,
  the weights annealed towards the last step (:func:`msl_weights`);
* **DA** (``first_order_steps``): first-order meta-gradients for the first meta-steps, exact after, inside one
  compiled program (a ``lax.cond`` on the outer step);
* **BNWB / BNRS**: per-step batch-norm weights and biases and per-step running statistics are properties of the
  model (:func:`metajax.models.conv4_per_step`), threaded through the inner loop as model state;
* **CA** (cosine annealing of the outer learning rate) is an Optax schedule (``optax.cosine_decay_schedule``).

Each technique is a module-level piece (:func:`lslr_init` and :func:`lslr_opt`, :func:`msl_weights`, the
derivative-order switch of the shared builder) fed into the builder every gradient-based learner uses
(:func:`~metajax._src.learner.gradient_learner`). Its meta-gradient reads the outer step, the model state and
the per-task keys from the :class:`~metajax.MetaContext` every learner takes, and returns the updated model
state; :func:`~metajax.make_meta_step` threads both through :class:`~metajax.MetaState`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax._src.base import MetaLearner, Params, Task, check_learning_rate, check_positive_int
from metajax._src.inner import AbstractMetaGradient, Selector, make_inner_opt, partition, select_mask
from metajax._src.learner import gradient_learner
from metajax._src.strategy import make_meta_gradient


class MAMLPlusPlusParams(NamedTuple):
    """Meta-parameters of :func:`maml_plus_plus`: the initial model and the learned inner rates.

    ``lrs`` has the structure of ``params``: a vector of ``num_inner_steps`` rates for every adapted leaf (LSLR)
    and ``None`` for the leaves the inner loop does not adapt; ``lrs`` is ``None`` altogether without LSLR.
    """

    params: Params
    lrs: Any


class LSLRState(NamedTuple):
    """State of :func:`per_step_sgd`: the number of steps taken."""

    count: jax.Array


def per_step_sgd(lrs: Any) -> optax.GradientTransformation:
    """Gradient descent whose step ``t`` scales each leaf's gradient by its own rate ``lrs[leaf][t]``.

    ``lrs`` has the structure of the updates, each leaf a vector of per-step rates (LSLR); past the last rate
    the last one is reused (``jnp.take`` clamps), which :func:`maml_plus_plus` never lets happen in training.
    """

    def init_fn(params):
        del params
        return LSLRState(jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        t = state.count
        new = jax.tree_util.tree_map(lambda g, a: -jnp.take(a, t, mode="clip").astype(g.dtype) * g, updates, lrs)
        return new, LSLRState(t + 1)

    return optax.GradientTransformation(init_fn, update_fn)


MIN_NON_FINAL_WEIGHT = 0.03
"""The multi-step loss keeps every non-final step's weight at least ``0.03 / num_steps`` while it anneals."""


def msl_weights(num_steps: int, step: Any, anneal_steps: int) -> jax.Array:
    r"""Multi-step-loss importance weights at outer step ``step``: shape ``(num_steps,)``, summing to 1.

    As in the MAML++ reference code: all weights start at :math:`1/K`; the non-final ones decay linearly to
    :math:`0.03/K` and the final one grows by the same total over ``anneal_steps`` outer steps, which the code
    counts in epochs of 500 meta-steps and this function continuously. From ``anneal_steps`` on only the final
    step counts (weights ``(0, ..., 0, 1)``).

    >>> [round(float(w), 3) for w in msl_weights(5, 0, 1000)]
    [0.2, 0.2, 0.2, 0.2, 0.2]
    >>> [round(float(w), 3) for w in msl_weights(5, 1000, 1000)]
    [0.0, 0.0, 0.0, 0.0, 1.0]
    """
    k = num_steps
    frac = jnp.asarray(step, jnp.result_type(float)) / anneal_steps
    floor = MIN_NON_FINAL_WEIGHT / k
    non_final = jnp.maximum(1.0 / k - frac / k, floor)
    final = jnp.minimum(1.0 / k + frac * (k - 1) / k, 1.0 - (k - 1) * floor)
    annealing = jnp.concatenate([jnp.full((k - 1,), non_final), final[None]])
    last_only = jnp.zeros((k,), frac.dtype).at[-1].set(1.0)
    return jnp.where(frac < 1.0, annealing, last_only)


def lslr_init(params: Params, mask: Any, num_steps: int, inner_lr: Any) -> MAMLPlusPlusParams:
    """LSLR's meta-parameters: a vector of ``num_steps`` rates ``inner_lr`` for every adapted leaf (``mask``)."""
    if mask is None:
        mask = jax.tree_util.tree_map(lambda _: True, params)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))

    def rates(m, p):
        del p
        return jnp.full((num_steps,), inner_lr, dtype) if m else None

    return MAMLPlusPlusParams(params, jax.tree_util.tree_map(rates, mask, params))


def lslr_opt(meta_params: MAMLPlusPlusParams, mask: Any) -> optax.GradientTransformation:
    """The inner optimiser of LSLR: :func:`per_step_sgd` with the learned rates of the adapted leaves."""
    lrs = meta_params.lrs
    if mask is not None:
        lrs, _ = partition(lrs, mask)
    return per_step_sgd(lrs)


def check_mamlpp_params(meta_params: Any) -> None:
    """Raise ``ValueError`` unless ``meta_params`` is what :func:`maml_plus_plus`'s ``init`` returns."""
    if not isinstance(meta_params, MAMLPlusPlusParams):
        raise ValueError(
            f"meta_params must be the MAMLPlusPlusParams that learner.init returns, got {type(meta_params).__name__}."
        )


def maml_plus_plus(
    loss_fn: Callable,
    inner_opt: str | optax.GradientTransformation | None = None,
    num_inner_steps: int = 5,
    *,
    inner_lr: float = 0.1,
    lslr: bool = True,
    msl_anneal_steps: int | None = None,
    msl_weights_fn: Callable[[jax.Array], jax.Array] | None = None,
    first_order_steps: int = 0,
    gradient: str | AbstractMetaGradient = "exact",
    stateful: bool = True,
    has_aux: bool = False,
    query_loss_fn: Callable | None = None,
    adapt: Selector | None = None,
    model_steps: int | None = None,
    task_chunk: int | None = None,
    task_spec: Task | None = None,
) -> MetaLearner:
    r"""MAML++ (Antoniou, Edwards & Storkey 2019): MAML with its training-stability techniques as options.

    With every option off (``lslr=False``, no multi-step loss, ``first_order_steps=0``) and a stateless loss this
    is :func:`maml` with plain SGD, to float rounding.

    Args:
      loss_fn: the support loss. With ``stateful=True`` (default) ``loss_fn(params, state, batch, step, key) ->
        (loss, new_state)`` (``(loss, (new_state, aux))`` with ``has_aux``): ``state`` is the model state (e.g.
        per-step running statistics), ``step`` the inner step (a traced int32; per-step batch-norm weights
        and statistics are indexed by it) and ``key`` a PRNG key or ``None``. With ``stateful=False`` a
        plain ``loss_fn(params, batch)``.
      inner_opt: without LSLR, the inner optimiser (``"sgd"``, ``"momentum"``, ``"adam"`` or an Optax
        transformation); with LSLR it must be ``None`` or ``"sgd"``.
      num_inner_steps: inner steps K.
      inner_lr: the initial value of every learned rate (LSLR) or the fixed rate (``lslr=False``).
      lslr: learned per-layer, per-step inner rates: every adapted parameter array gets a vector of K rates,
        initialised to ``inner_lr`` and meta-learned (the update of step t is ``w - lr[w][t] * grad``).
      msl_anneal_steps: turn on the multi-step loss (MSL): the meta-objective is
        :math:`\sum_t v_t(s)\,L^q_t` over the query loss after every inner step, with the weights
        :func:`msl_weights` annealed towards the last step over this many outer steps; afterwards only the last
        step counts (and only its query loss is computed). ``None``: the last step's query loss only (MAML).
      msl_weights_fn: instead of the annealing schedule, ``fn(outer_step) -> (K,) weights`` used at every step.
      first_order_steps: derivative-order annealing (DA): first-order meta-gradients for outer steps
        ``0 .. first_order_steps - 1``, ``gradient`` after. Both are compiled into one program and chosen by a
        ``lax.cond`` on the outer step, so the switch never recompiles.
      gradient: ``"exact"`` (default), ``"exact_remat"``, ``"first_order"`` or an ``AbstractMetaGradient``
        (``Implicit`` is refused: it assumes a loss without state).
      stateful: which loss signature ``loss_fn`` has (above).
      has_aux: whether losses return auxiliary metrics (reported as ``query_<name>``).
      query_loss_fn: scores adapted parameters: ``fn(params, state, query, support, step, key) -> loss`` (or
        ``(loss, aux)`` with ``has_aux``; with ``stateful=False``: ``fn(params, query, support)``). Default:
        ``loss_fn`` on the query batch (its state update discarded).
      adapt: selector of the leaves the inner loop adapts (default: all). The reference implementation adapts
        the convolutions and the head and meta-learns the per-step batch-norm weights outside the inner loop:
        ``adapt="Conv|head"`` with :func:`metajax.models.conv4_per_step`.
      model_steps: the number of per-step entries of the model's per-step parameters and statistics
        (``model.num_steps``); must equal ``num_inner_steps``.
      task_chunk, task_spec: as in :func:`maml`.

    Returns:
      A :class:`MetaLearner`: ``init(params) -> MAMLPlusPlusParams``; ``meta_grad(meta_params, tasks,
      context) -> (direction, metrics, model_state)`` with the task-averaged model state after the inner loops.
      Metrics include ``msl_weight_last`` (the last step's weight) and ``first_order`` (1 while
      derivative-order annealing uses first order).

    Raises:
      ValueError: a non-positive step count, ``model_steps`` different from ``num_inner_steps``, LSLR with an
        inner optimiser other than SGD, a negative ``first_order_steps`` or ``msl_anneal_steps``, both MSL
        arguments, or ``gradient=Implicit()``.

    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2)
    >>> learner = maml_plus_plus(loss, None, 3, inner_lr=0.1, stateful=False, msl_anneal_steps=100)
    >>> learner.init(jnp.zeros(2)).lrs.shape  # one rate per parameter array and inner step
    (3,)
    >>> tasks = Task((jnp.ones((2, 4, 2)), jnp.ones((2, 4, 2))), (jnp.ones((2, 4, 2)), jnp.ones((2, 4, 2))))
    >>> g, metrics, _ = learner.meta_grad(learner.init(jnp.zeros(2)), tasks)  # outer step 0
    >>> round(float(metrics["msl_weight_last"]), 6)  # uniform weights at the start: 1/3 each
    0.333333

    References:
      Antoniou, Edwards, Storkey (2019). How to train your MAML. ICLR.
    """
    num_inner_steps = check_positive_int("num_inner_steps", num_inner_steps)
    if model_steps is not None and check_positive_int("model_steps", model_steps) != num_inner_steps:
        raise ValueError(
            f"model_steps must equal num_inner_steps: the model has per-step parameters/statistics for {model_steps} "
            f"inner steps, the learner takes num_inner_steps={num_inner_steps}."
        )
    check_learning_rate("inner_lr", inner_lr)
    if isinstance(first_order_steps, bool) or not isinstance(first_order_steps, int) or first_order_steps < 0:
        raise ValueError(f"first_order_steps must be an integer >= 0, got {first_order_steps!r}.")
    if msl_anneal_steps is not None:
        check_positive_int("msl_anneal_steps", msl_anneal_steps)
        if msl_weights_fn is not None:
            raise ValueError("pass msl_anneal_steps (the MAML++ schedule) or msl_weights_fn, not both.")
        msl_weights_fn = functools.partial(msl_weights, num_inner_steps, anneal_steps=msl_anneal_steps)
    if msl_weights_fn is not None and not callable(msl_weights_fn):
        raise ValueError(f"msl_weights_fn must be a callable fn(outer_step) -> weights, got {msl_weights_fn!r}.")
    grad = make_meta_gradient(gradient)
    if not grad.supports_state:
        raise ValueError(
            "maml_plus_plus takes gradient='exact', 'exact_remat', 'first_order' or Exact(...)/FirstOrder(), "
            f"got {type(grad).__name__}(): iMAML's meta-gradient assumes the inner problem is a fixed loss without "
            "state."
        )
    if lslr:
        if inner_opt not in (None, "sgd"):
            raise ValueError(
                "lslr=True learns the rates of plain gradient steps: inner_opt must be None or 'sgd', "
                f"got {inner_opt!r}."
            )
        init = lambda params: lslr_init(params, mask_of(params), num_inner_steps, inner_lr)  # noqa: E731
        inner_opt_of = lslr_opt
    else:
        fixed_opt = make_inner_opt(inner_opt, inner_lr)
        init = lambda params: MAMLPlusPlusParams(params, None)  # noqa: E731
        inner_opt_of = lambda meta_params, mask: fixed_opt  # noqa: E731

    def mask_of(params):
        return None if adapt is None else select_mask(params, adapt, "adapt")

    return gradient_learner(
        name="mamlpp",
        loss_fn=loss_fn,
        has_aux=has_aux,
        query_loss_fn=query_loss_fn,
        num_inner_steps=num_inner_steps,
        gradient=grad,
        inner_opt_of=inner_opt_of,
        init=init,
        model_params=lambda mp: mp.params,
        head=adapt,
        task_chunk=task_chunk,
        task_spec=task_spec,
        stateful=stateful,
        msl_weights_fn=msl_weights_fn,
        msl_until=msl_anneal_steps,
        first_order_steps=first_order_steps,
        fixed_steps=lslr or model_steps is not None,
        check_meta_params=check_mamlpp_params,
        head_name="adapt",
    )
