"""Reptile (serial and batched)."""

from __future__ import annotations

from typing import Any

import jax
import optax

from metajax._src.base import LossFn, MetaLearner, QueryLossFn, Task, check_positive_int
from metajax._src.inner import Exact, Selector, make_inner_opt, select_mask
from metajax._src.learner import (
    check_task_chunk,
    identity,
    make_adapt,
    make_meta_grad,
    public_query_loss,
    query_loss,
    support_loss,
    task_metrics,
)
from metajax._src.validation import check_task


def reptile(
    loss_fn: LossFn,
    inner_opt: str | optax.GradientTransformation | None = None,
    num_inner_steps: int = 5,
    *,
    inner_lr: Any = 0.01,
    has_aux: bool = False,
    query_loss_fn: QueryLossFn | None = None,
    head: Selector | None = None,
    task_chunk: int | None = None,
    task_spec: Task | None = None,
    inner_batch_size: int | None = None,
    score_query: bool = True,
) -> MetaLearner:
    r"""Reptile: the outer direction is :math:`\phi - \tilde\phi_i`.

    :math:`\tilde\phi_i` is ``num_inner_steps`` steps of ``inner_opt`` on task
    *i*'s support batch (Reptile has no support/query split: put all of a
    task's training data in ``support``; ``query`` is only scored for
    monitoring). ``meta_grad`` returns the mean over the task batch, so with
    the outer optimiser ``optax.sgd(epsilon)`` one meta-step is
    :math:`\phi \leftarrow \phi + \epsilon\,\mathrm{mean}_i(\tilde\phi_i - \phi)`
    (batched Reptile); a meta-batch of one task is serial Reptile. Nothing is
    differentiated through the inner loop.

    Args:
      loss_fn: as in :func:`maml`, like ``inner_opt``, ``inner_lr``, ``has_aux``, ``query_loss_fn``,
        ``head``, ``task_chunk`` and ``task_spec``.
      num_inner_steps: inner steps k (the paper uses 5 to 10 for training).
      inner_batch_size: ``None`` (full-batch steps) or the size of the
        consecutive minibatches each inner step takes from the support batch
        (the paper's ``inner_batch``; see ``AbstractMetaGradient.inner_loop``).
      score_query: evaluate the adapted parameters on each task's query batch
        for the metrics (``query_loss`` and the aux, e.g. accuracy). The
        direction never uses it; ``False`` skips that forward pass (on the
        Omniglot workload it is about a third of the step) and the metrics
        are then only ``support_loss``, the loss before adapting.

    >>> import jax.numpy as jnp
    >>> reptile(lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2), "sgd", 5).name
    'reptile'

    References:
      Nichol, Achiam, Schulman (2018). On First-Order Meta-Learning
      Algorithms. arXiv:1803.02999.
    """
    num_inner_steps = check_positive_int("num_inner_steps", num_inner_steps)
    if inner_batch_size is not None:
        check_positive_int("inner_batch_size", inner_batch_size)
    task_chunk = check_task_chunk(task_chunk)
    if not isinstance(score_query, bool):
        raise TypeError(f"score_query must be a bool, got {score_query!r}.")
    opt = make_inner_opt(inner_opt, inner_lr)
    loss = support_loss(loss_fn, has_aux, stateful=False)
    qloss = public_query_loss(query_loss(loss_fn, query_loss_fn, has_aux, stateful=False), num_inner_steps)
    # nothing is differentiated through the inner loop: any unrolled loop will do
    adapt = make_adapt(loss, lambda mp, mask: opt, identity, head, num_inner_steps, inner_batch_size, Exact())

    def task_direction(params, task, context=None):
        del context  # Reptile's models have no state and its inner loop draws no randomness
        check_task(task, "task", spec=task_spec)
        params = jax.lax.stop_gradient(params)
        res = adapt(params, task.support)
        direction = jax.tree_util.tree_map(lambda p, a: p - a, params, res.params)
        if not score_query:
            return direction, {"support_loss": res.losses[0]}, None
        qval, aux = qloss(res.params, task.query, task.support)
        return direction, task_metrics(qval, res.losses, aux), None

    def init(params):
        if head is not None:
            select_mask(params, head)
        return params

    return MetaLearner(
        init=init,
        model_params=identity,
        adapt=adapt,
        task_direction=task_direction,
        meta_grad=make_meta_grad(task_direction, task_spec, task_chunk),
        query_loss=qloss,
        name="reptile",
        num_inner_steps=num_inner_steps,
    )
