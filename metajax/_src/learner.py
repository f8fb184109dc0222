"""The shared builder of the gradient-based learners, and the pieces every learner uses.

Every learner has one calling convention (:class:`~metajax._src.base.MetaLearner`): the meta-gradient takes a
:class:`~metajax._src.base.MetaContext` (outer step, model state, per-task keys) and returns the task-averaged
model state beside the direction and the metrics. A loss without state is adapted to the loss with state once,
here (:func:`support_loss`), so one inner scan, one objective and one batching path serve MAML, FOMAML, iMAML,
Meta-SGD, ANIL, MAML++ and the policies of meta-RL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metajax._src.base import InnerResult, MetaContext, MetaLearner, Metrics, Task, check_positive_int
from metajax._src.inner import AbstractMetaGradient, FirstOrder, select_mask, support_loss
from metajax._src.validation import check_task

AS_TRAINED = "as_trained"
"""``adapt(..., batch_size=AS_TRAINED)`` uses the learner's ``inner_batch_size``."""

# ---------------------------------------------------------------------------
# Losses: one signature inside, two outside.
# ---------------------------------------------------------------------------


def query_loss(loss_fn: Callable, query_loss_fn: Callable | None, has_aux: bool, stateful: bool) -> Callable:
    """``qloss(params, state, query, support, step, key) -> (loss, aux)``: how adapted parameters are scored.

    Default: the support loss on the query batch (its state update discarded). A ``query_loss_fn`` has the
    signature of the loss: ``fn(params, query, support)`` without state (the support batch is there for
    non-transductive batch normalisation), ``fn(params, state, query, support, step, key)`` with state.
    """
    if query_loss_fn is None:
        loss = support_loss(loss_fn, has_aux, stateful)

        def default(params, state, query, support, step, key):
            del support
            value, (_, aux) = loss(params, state, query, step, key)
            return value, aux

        return default
    if stateful:

        def given(params, state, query, support, step, key):
            out = query_loss_fn(params, state, query, support, step, key)
            return out if has_aux else (out, {})

        return given

    def given_plain(params, state, query, support, step, key):
        del state, step, key
        out = query_loss_fn(params, query, support)
        return out if has_aux else (out, {})

    return given_plain


def public_query_loss(qloss: Callable, num_inner_steps: int) -> Callable:
    """The learner's ``query_loss(params, query, support, state=None, step=None, key=None)``."""

    def scored(params, query, support, state=None, step=None, key=None):
        step = jnp.int32(num_inner_steps - 1) if step is None else step
        return qloss(params, state, query, support, step, key)

    return scored


def mean_state(new_state: Any, old_state: Any) -> Any:
    """The task-averaged state in the old state's dtypes (averaging promotes integer leaves)."""
    return jax.tree_util.tree_map(lambda n, o: jnp.asarray(n).astype(jnp.result_type(o)), new_state, old_state)


# ---------------------------------------------------------------------------
# Batching over tasks.
# ---------------------------------------------------------------------------


def check_task_chunk(task_chunk: Any) -> int | None:
    if task_chunk is None:
        return None
    return check_positive_int("task_chunk", task_chunk)


def resolve_task_chunk(value: Any, backend: str | None = None) -> int | None:
    """A task-batching strategy from a config value: ``None`` means vmap over all tasks.

    ``"auto"``: ``lax.map`` one task at a time on CPU (per-task conv weights:
    faster than vmap and ~5x less memory, benchmarks/README.md) and ``vmap``
    on accelerators. ``"vmap"``: vmap. An int (or its string): chunks of that
    many tasks, vmapped inside a chunk.
    """
    if value == "auto":
        return 1 if (backend or jax.default_backend()) == "cpu" else None
    if value in (None, "vmap"):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"task_chunk must be 'auto', 'vmap' or a positive int, got {value!r}.")
    return check_task_chunk(value)


def batch_over_tasks(task_fn: Callable, meta_params: Any, tasks: Any, task_chunk: int | None) -> Any:
    """Mean over the task axis of ``task_fn(meta_params, task)``.

    ``task_chunk=None`` vmaps over the whole batch; an int runs ``lax.map``
    over chunks of that many tasks (vmapped inside a chunk), trading speed for
    memory and, on CPU, avoiding batched per-task weights where they are slow.
    """
    fn = lambda task: task_fn(meta_params, task)  # noqa: E731
    if task_chunk is None:
        out = jax.vmap(fn)(tasks)
    else:
        out = jax.lax.map(fn, tasks, batch_size=task_chunk)
    return jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), out)


def as_context(context: Any, tasks: Any = None) -> MetaContext:
    """``context`` checked (``None`` is step 0, no model state, no keys); with a batch, one key per task."""
    if context is None:
        return MetaContext()
    if not isinstance(context, MetaContext):
        raise ValueError(
            f"context must be a metajax.MetaContext(step, model_state, task_keys) or None, got "
            f"{type(context).__name__}: make_meta_step builds it, or pass MetaContext(jnp.int32(step), state, keys)."
        )
    if tasks is not None and context.task_keys is not None:
        num = jax.tree_util.tree_leaves(tasks)[0].shape[0]
        if jnp.shape(context.task_keys)[0] != num:
            raise ValueError(
                f"context.task_keys must hold one key per task ({num}), got {jnp.shape(context.task_keys)[0]}."
            )
    return context


def make_meta_grad(direction: Callable, task_spec: Task | None, task_chunk: int | None) -> Callable:
    """``meta_grad(meta_params, tasks, context=None)``: check the batch at trace time, average ``direction``.

    ``direction(meta_params, task, context) -> (direction, metrics, model_state)`` for one task, whose
    ``context.task_keys`` is that task's key.
    """

    def meta_grad(meta_params, tasks, context=None):
        check_task(tasks, "tasks", batched=True, spec=task_spec)
        context = as_context(context, tasks)

        def one(mp, item):
            task, key = item
            return direction(mp, task, MetaContext(context.step, context.model_state, key))

        grads, metrics, state = batch_over_tasks(one, meta_params, (tasks, context.task_keys), task_chunk)
        return grads, metrics, mean_state(state, context.model_state)

    return meta_grad


# ---------------------------------------------------------------------------
# The inner loop of a learner, and the objective its meta-gradient differentiates.
# ---------------------------------------------------------------------------


def make_adapt(
    loss: Callable,
    inner_opt_of: Callable[[Any, Any], optax.GradientTransformation],
    model_params: Callable,
    head: Any,
    num_inner_steps: int,
    inner_batch_size: int | None,
    gradient: AbstractMetaGradient,
    fixed_steps: bool = False,
    check_meta_params: Callable[[Any], None] | None = None,
    head_name: str = "head",
    state_gradient: bool = False,
) -> Callable[..., InnerResult]:
    """The learners' ``adapt(meta_params, support, *, model_state, key, num_steps, eval_fn, batch_size)``.

    ``adapt.run(strategy, meta_params, support, *, ...)`` runs the same loop with another gradient strategy
    (derivative-order annealing switches to first order). ``fixed_steps``: the learner's rates or the
    model's per-step parameters exist for ``num_inner_steps`` steps only, so no other count is accepted.
    """

    def check_steps(num_steps):
        if num_steps is None:
            return num_inner_steps
        num_steps = check_positive_int("num_steps", num_steps)
        if fixed_steps and num_steps != num_inner_steps:
            raise ValueError(
                f"num_steps must be {num_inner_steps} for this learner (its learned rates or the model's per-step "
                f"parameters exist for {num_inner_steps} inner steps), got {num_steps}."
            )
        return num_steps

    def run(strategy, meta_params, support, *, model_state=None, key=None, num_steps=None, eval_fn=None,
            after_step=None, batch_size=AS_TRAINED):  # fmt: skip
        if check_meta_params is not None:
            check_meta_params(meta_params)
        params = model_params(meta_params)
        mask = None if head is None else select_mask(params, head, head_name)
        size = inner_batch_size if batch_size is AS_TRAINED else batch_size
        return strategy.inner_loop(
            loss,
            inner_opt_of(meta_params, mask),
            params,
            support,
            check_steps(num_steps),
            state=model_state,
            key=key,
            mask=mask,
            eval_fn=eval_fn,
            after_step=after_step,
            batch_size=size,
            state_gradient=state_gradient,
        )

    def adapt(meta_params, support, *, model_state=None, key=None, num_steps=None, eval_fn=None,
              batch_size=AS_TRAINED) -> InnerResult:  # fmt: skip
        return run(gradient, meta_params, support, model_state=model_state, key=key, num_steps=num_steps,
                   eval_fn=eval_fn, batch_size=batch_size)  # fmt: skip

    adapt.run = run
    return adapt


def task_metrics(query_loss: jax.Array, support_losses: jax.Array, aux: dict[str, jax.Array]) -> Metrics:
    """Per-task metrics: post-adaptation query loss, support loss before adapting, ``query_<aux>``."""
    return {"query_loss": query_loss, "support_loss": support_losses[0], **{f"query_{k}": v for k, v in aux.items()}}


def query_objective(adapt: Callable, qloss: Callable, num_inner_steps: int, weights_fn: Callable | None) -> Callable:
    """``objective(strategy, weighted, meta_params, task, context) -> (value, (qval, aux, losses, state))``.

    Unweighted: the query loss after the last inner step (MAML). Weighted: the multi-step loss of MAML++,
    :math:`\\sum_t v_t(s) L^q_t`, the query loss recorded after every inner step with the weights
    ``weights_fn(outer_step)``; ``qval`` and ``aux`` are the last step's either way.
    """

    def objective(strategy, weighted, meta_params, task, context):
        model_state, key = context.model_state, context.task_keys
        after = None
        if weighted:

            def after(p, s, t, k):
                return qloss(p, s, task.query, task.support, t, k)

        res = adapt.run(strategy, meta_params, task.support, model_state=model_state, key=key, after_step=after)
        last = jnp.int32(num_inner_steps - 1)
        if weighted:
            per_step, auxes = res.trace
            weights = jnp.asarray(weights_fn(context.step), per_step.dtype)
            value = jnp.sum(weights * per_step)
            qval, aux = per_step[-1], jax.tree_util.tree_map(lambda a: a[-1], auxes)
        else:
            k = None if key is None else jax.random.fold_in(key, 2 * last + 1)
            qval, aux = qloss(res.params, res.state, task.query, task.support, last, k)
            value = qval
        return value, (qval, aux, res.losses, res.state)

    return objective


def by_outer_step(
    context: MetaContext,
    run: Callable[[AbstractMetaGradient, bool], Any],
    gradient: AbstractMetaGradient,
    *,
    weighted: bool,
    weighted_until: int | None,
    first_order_steps: int,
) -> Any:
    """Run the ``(strategy, weighted)`` variant the outer step calls for, with ``lax.cond`` where it varies.

    Derivative-order annealing: first order for outer steps below ``first_order_steps``, ``gradient`` after.
    The multi-step loss: weighted while the outer step is below ``weighted_until`` (``None``: always as
    ``weighted`` says). Both variants are compiled into one program, so the switch never recompiles.
    """
    step = jnp.asarray(context.step, jnp.int32)

    def by_weighting(strategy):
        if weighted_until is None:
            return run(strategy, weighted)
        return jax.lax.cond(step < weighted_until, lambda: run(strategy, True), lambda: run(strategy, False))

    if first_order_steps == 0:
        return by_weighting(gradient)
    return jax.lax.cond(step < first_order_steps, lambda: by_weighting(FirstOrder()), lambda: by_weighting(gradient))


def post_adaptation_risk(learner: MetaLearner, meta_params: Any, tasks: Task) -> jax.Array:
    """Query loss after the learner's inner loop, for every task of a batch (shape ``(num_tasks,)``)."""

    def one(task):
        res = learner.adapt(meta_params, task.support)
        return learner.query_loss(res.params, task.query, task.support, res.state)[0]

    return jax.vmap(one)(tasks)


def gradient_learner(
    *,
    name: str,
    loss_fn: Callable,
    has_aux: bool,
    query_loss_fn: Callable | None,
    num_inner_steps: int,
    gradient: AbstractMetaGradient,
    inner_opt_of: Callable[[Any, Any], optax.GradientTransformation],
    init: Callable,
    model_params: Callable,
    head: Any,
    task_chunk: int | None,
    task_spec: Task | None = None,
    inner_batch_size: int | None = None,
    stateful: bool = False,
    msl_weights_fn: Callable[[jax.Array], jax.Array] | None = None,
    msl_until: int | None = None,
    first_order_steps: int = 0,
    fixed_steps: bool = False,
    check_meta_params: Callable[[Any], None] | None = None,
    head_name: str = "head",
    state_gradient: bool = False,
) -> MetaLearner:
    """Build a learner whose direction is the gradient of the post-adaptation query loss.

    Args:
      name: the learner's name.
      loss_fn, has_aux, query_loss_fn: the support and query losses (:func:`support_loss`, :func:`query_loss`).
      num_inner_steps: inner steps K.
      gradient: how gradients cross the inner loop.
      inner_opt_of: ``inner_opt_of(meta_params, mask) -> GradientTransformation``; Meta-SGD and MAML++ build
        their optimiser from learned rates held in the meta-parameters (restricted to the adapted leaves by
        ``mask``, ``None`` when every leaf is adapted), the others ignore both arguments.
      init / model_params: meta-parameter wrapping (identity for MAML).
      head: ``None`` (adapt everything) or a selector of the adapted subtree.
      task_chunk, task_spec, inner_batch_size: as in :func:`~metajax.maml`.
      stateful: whether ``loss_fn`` (and ``query_loss_fn``) take a model state, the inner step and a key.
      msl_weights_fn: the multi-step loss: ``fn(outer_step) -> (K,) weights`` of the query loss after every
        inner step; ``None``: the last step's query loss only.
      msl_until: with ``msl_weights_fn``, the outer step from which only the last step counts (a ``lax.cond``).
      first_order_steps: derivative-order annealing: first-order meta-gradients for outer steps below it.
      fixed_steps: refuse ``adapt(num_steps=...)`` other than ``num_inner_steps`` (per-step rates or model).
      check_meta_params: optional check of the meta-parameters, run at trace time.
      head_name: the argument name of ``head`` in the factory, for error messages.
      state_gradient: differentiate through the model state across inner steps (see
        :meth:`~metajax.AbstractMetaGradient.inner_loop`).
    """
    num_inner_steps = check_positive_int("num_inner_steps", num_inner_steps)
    if inner_batch_size is not None:
        check_positive_int("inner_batch_size", inner_batch_size)
    task_chunk = check_task_chunk(task_chunk)
    if stateful and not gradient.supports_state:
        raise ValueError(
            f"gradient={type(gradient).__name__}() does not support losses with model state or per-step keys: "
            "its meta-gradient assumes the inner problem is a fixed loss of the parameters. Use gradient='exact', "
            "'exact_remat' or 'first_order'."
        )
    loss = support_loss(loss_fn, has_aux, stateful)
    qloss = query_loss(loss_fn, query_loss_fn, has_aux, stateful)
    adapt = make_adapt(
        loss, inner_opt_of, model_params, head, num_inner_steps, inner_batch_size, gradient, fixed_steps,
        check_meta_params, head_name, state_gradient,
    )  # fmt: skip
    objective = query_objective(adapt, qloss, num_inner_steps, msl_weights_fn)

    def direction(strategy, weighted, meta_params, task, context):
        (_, (qval, aux, losses, state)), grads = jax.value_and_grad(
            lambda mp: objective(strategy, weighted, mp, task, context), has_aux=True
        )(meta_params)
        return grads, task_metrics(qval, losses, aux), state

    def choose(context, run):
        return by_outer_step(
            context,
            run,
            gradient,
            weighted=msl_weights_fn is not None,
            weighted_until=msl_until,
            first_order_steps=first_order_steps,
        )

    def task_direction(meta_params, task, context=None):
        check_task(task, "task", spec=task_spec)
        context = as_context(context)
        return choose(context, lambda strategy, weighted: direction(strategy, weighted, meta_params, task, context))

    def meta_grad(meta_params, tasks, context=None):
        check_task(tasks, "tasks", batched=True, spec=task_spec)
        context = as_context(context, tasks)
        step = jnp.asarray(context.step, jnp.int32)

        def batched(strategy, weighted):
            def one(mp, item):
                task, key = item
                return direction(strategy, weighted, mp, task, MetaContext(step, context.model_state, key))

            return batch_over_tasks(one, meta_params, (tasks, context.task_keys), task_chunk)

        grads, metrics, state = choose(context, batched)
        if msl_weights_fn is not None:
            metrics = dict(metrics, msl_weight_last=jnp.asarray(msl_weights_fn(step), jnp.float32)[-1])
        if first_order_steps:
            metrics = dict(metrics, first_order=(step < first_order_steps).astype(jnp.int32))
        return grads, metrics, mean_state(state, context.model_state)

    return MetaLearner(
        init=init,
        model_params=model_params,
        adapt=adapt,
        task_direction=task_direction,
        meta_grad=meta_grad,
        query_loss=public_query_loss(qloss, num_inner_steps),
        name=name,
        num_inner_steps=num_inner_steps,
    )


def identity(x):
    return x
