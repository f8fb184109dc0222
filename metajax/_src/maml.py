"""MAML and first-order MAML (FOMAML)."""

from __future__ import annotations

from typing import Any

import optax

from metajax._src.base import LossFn, MetaLearner, QueryLossFn, Task
from metajax._src.implicit import Implicit
from metajax._src.inner import AbstractMetaGradient, FirstOrder, Selector, make_inner_opt, warn_if_unsafe_for_exact
from metajax._src.learner import gradient_learner, identity
from metajax._src.strategy import make_meta_gradient


def maml(
    loss_fn: LossFn,
    inner_opt: str | optax.GradientTransformation | None = None,
    num_inner_steps: int = 1,
    *,
    inner_lr: Any = 0.01,
    gradient: str | AbstractMetaGradient = "exact",
    has_aux: bool = False,
    query_loss_fn: QueryLossFn | None = None,
    head: Selector | None = None,
    task_chunk: int | None = None,
    task_spec: Task | None = None,
    inner_batch_size: int | None = None,
    stateful: bool = False,
    state_gradient: bool = False,
) -> MetaLearner:
    r"""Model-Agnostic Meta-Learning.

    Meta-objective :math:`F(\theta) = \frac1T \sum_i f^q_i(u_i(\theta))` where
    :math:`u_i` is ``num_inner_steps`` steps of ``inner_opt`` on task *i*'s
    support loss. With ``gradient="exact"`` the meta-gradient is
    :math:`\frac1T\sum_i (\partial u_i/\partial\theta)^\top \nabla f^q_i(u_i)`,
    for one SGD step :math:`(I - \alpha\nabla^2 f^s_i)^\top\nabla f^q_i(u_i)`,
    computed with Hessian-vector products (the Hessian is never formed).

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (``(loss, aux)`` with
        ``has_aux``); the support (inner) loss, and the query loss unless
        ``query_loss_fn`` is given.
      inner_opt: ``"sgd"`` (default), ``"momentum"``, ``"adam"`` (safe
        ``eps_root``) or any ``optax.GradientTransformation``.
      num_inner_steps: inner steps k >= 1.
      inner_lr: inner learning rate for named optimisers (alpha).
      gradient: ``"exact"``, ``"first_order"`` or an ``AbstractMetaGradient``
        such as ``Exact(remat=True)``.
      has_aux: whether losses return ``(loss, aux_dict)``; aux is reported
        as ``query_<name>`` metrics.
      query_loss_fn: optional ``fn(params, query, support)`` scoring adapted
        parameters (e.g. non-transductive batch norm).
      head: optional selector of the subtree adapted in the inner loop (the
        rest is meta-learned but frozen inside it); see :func:`anil`.
      task_chunk: ``None`` vmaps over the task batch; an int maps over chunks.
      task_spec: optional per-task shapes checked against every task batch.
      inner_batch_size: ``None`` (each inner step sees the whole support
        batch) or the size of consecutive inner minibatches.
      stateful: ``False``: ``loss_fn(params, batch)``. ``True``: ``loss_fn(params, state, batch, step, key) ->
        (loss, new_state)`` (``(loss, (new_state, aux))`` with ``has_aux``) for models with state (running
        statistics) or randomness (dropout, sampled rollouts): ``step`` is the inner step (a traced int32) and
        ``key`` the task's key for that step, or ``None`` in a run without keys; ``query_loss_fn`` then is
        ``fn(params, state, query, support, step, key)``.
      state_gradient: with ``stateful``, let meta-gradients flow through the state from one inner step to the
        next (cut under first order): for a state whose dependence on the parameters is part of the objective,
        such as the DiCE weight of sampled rollouts (:func:`metajax.rl.maml_rl`). Running statistics: ``False``.

    Returns:
      A :class:`MetaLearner`.

    >>> import jax.numpy as jnp
    >>> loss = lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2)
    >>> learner = maml(loss, "sgd", 1, inner_lr=0.1)
    >>> learner.name
    'maml'

    References:
      Finn, Abbeel, Levine (2017). Model-Agnostic Meta-Learning for Fast
      Adaptation of Deep Networks. ICML.
    """
    opt = make_inner_opt(inner_opt, inner_lr)
    grad = make_meta_gradient(gradient)
    if isinstance(inner_opt, optax.GradientTransformation) and not isinstance(grad, (FirstOrder, Implicit)):
        warn_if_unsafe_for_exact(opt, stacklevel=3)
    name = {"exact": "maml", "first_order": "fomaml", "implicit": "imaml"}.get(grad.name, f"maml-{grad.name}")
    return gradient_learner(
        name=name,
        loss_fn=loss_fn,
        has_aux=has_aux,
        query_loss_fn=query_loss_fn,
        num_inner_steps=num_inner_steps,
        gradient=grad,
        inner_opt_of=lambda mp, mask: opt,
        init=identity,
        model_params=identity,
        head=head,
        task_chunk=task_chunk,
        task_spec=task_spec,
        inner_batch_size=inner_batch_size,
        stateful=stateful,
        state_gradient=state_gradient,
    )


def fomaml(
    loss_fn: LossFn,
    inner_opt: str | optax.GradientTransformation | None = None,
    num_inner_steps: int = 1,
    **kwargs: Any,
) -> MetaLearner:
    """First-order MAML: :func:`maml` with ``gradient=FirstOrder()``.

    The meta-gradient is the query gradient at the adapted parameters,
    :math:`\\frac1T\\sum_i \\nabla f^q_i(u_i(\\theta))`: same size as MAML's,
    no Hessian-vector products.

    >>> import jax.numpy as jnp
    >>> fomaml(lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2), "sgd", 1).name
    'fomaml'

    References:
      Finn et al. (2017); Nichol, Achiam, Schulman (2018). On First-Order
      Meta-Learning Algorithms.
    """
    if "gradient" in kwargs:
        raise ValueError("fomaml fixes gradient='first_order'; use maml(..., gradient=...) to choose another.")
    return maml(loss_fn, inner_opt, num_inner_steps, gradient=FirstOrder(), **kwargs)


def imaml(
    loss_fn: LossFn,
    inner_opt: str | optax.GradientTransformation | None = None,
    num_inner_steps: int = 16,
    *,
    lam: float = 1.0,
    cg_steps: int = 5,
    cg_tol: float = 0.0,
    **kwargs: Any,
) -> MetaLearner:
    r"""Implicit MAML: :func:`maml` with ``gradient=Implicit(lam, cg_steps, cg_tol)``.

    The inner loop runs ``num_inner_steps`` steps of ``inner_opt`` on
    :math:`L^s(\phi) + \frac{\lambda}{2}\lVert\phi-\theta\rVert^2` from
    :math:`\theta`; the meta-gradient is
    :math:`(I + \nabla^2 L^s(\phi)/\lambda)^{-1}\nabla L^q(\phi)`, solved with
    ``cg_steps`` conjugate-gradient iterations. Memory does not grow with
    ``num_inner_steps``; see :class:`metajax.Implicit` for when it is exact.

    >>> import jax.numpy as jnp
    >>> imaml(lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2), "sgd", 10, inner_lr=0.1, lam=2.0).name
    'imaml'

    References:
      Rajeswaran, Finn, Kakade, Levine (2019). Meta-Learning with Implicit
      Gradients. NeurIPS.
    """
    if "gradient" in kwargs:
        raise ValueError("imaml fixes gradient=Implicit(...); use maml(..., gradient=...) to choose another.")
    return maml(
        loss_fn, inner_opt, num_inner_steps, gradient=Implicit(lam=lam, cg_steps=cg_steps, cg_tol=cg_tol), **kwargs
    )
