"""One meta-step: task batch -> meta-gradient -> Optax outer update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax._src.base import MetaContext, MetaLearner, MetaParams, MetaState, Metrics, Task, check_positive_int


class MetaStep(NamedTuple):
    """``init(meta_params, model_state=None, key=None) -> MetaState`` and
    ``step(meta_params, state, tasks) -> (meta_params, state, metrics)``.

    ``model_state`` is the model state (running statistics) every task starts from, ``None`` for a model
    without one; ``key`` the run's PRNG key for learners whose losses draw randomness (dropout, sampled
    rollouts): meta-step ``s`` gives task ``i`` the key ``split(fold_in(key, s), num_tasks)[i]``. Both live in
    the :class:`MetaState`, so a checkpoint of the state resumes them exactly; the step replaces the model
    state by the task average of the states the inner loops end with.

    Both are pure and unjitted; wrap ``step`` in ``jax.jit`` (donating the
    first two arguments) in scripts. The step's metrics are the batch means of
    the learner's metrics plus ``grad_norm`` (global norm of the direction).
    """

    init: Callable[[MetaParams], MetaState]
    step: Callable[[MetaParams, MetaState, Task], tuple[MetaParams, MetaState, Metrics]]


def make_meta_step(
    learner: MetaLearner,
    outer_opt: optax.GradientTransformation,
    skip_nonfinite: bool = False,
    mesh: Any = None,
) -> MetaStep:
    """Build the meta-step of ``learner`` with ``outer_opt`` as meta-optimiser.

    Args:
      learner: a :class:`MetaLearner` (``maml``, ``fomaml``, ``reptile``,
        ``meta_sgd``, ``anil``, ``imaml``, ``maml_plus_plus``).
      outer_opt: any ``optax.GradientTransformation`` (for Reptile,
        ``optax.sgd(epsilon)`` gives the paper's update).
      skip_nonfinite: when the direction has a NaN or infinity, leave the
        meta-parameters, optimiser state and model state unchanged (the step
        count still advances) and report ``skipped = 1`` in the metrics.
      mesh: optional ``jax.sharding.Mesh`` with a ``"tasks"`` axis
        (:func:`metajax.make_mesh`): each device computes the meta-gradient
        of its share of the task batch and one all-reduce averages them; the
        outer update is replicated. The task batch must split evenly.

    Returns:
      A :class:`MetaStep`.

    >>> import jax, jax.numpy as jnp, optax
    >>> from metajax import maml, Task
    >>> learner = maml(lambda w, b: jnp.mean((b[0] * w - b[1]) ** 2), "sgd", 1, inner_lr=0.1)
    >>> ms = make_meta_step(learner, optax.adam(1e-3))
    >>> w = jnp.zeros(())
    >>> state = ms.init(w)
    >>> tasks = Task((jnp.ones((4, 5)), jnp.ones((4, 5))), (jnp.ones((4, 5)), jnp.ones((4, 5))))
    >>> w, state, metrics = jax.jit(ms.step)(w, state, tasks)
    >>> int(state.step)
    1
    """
    if not isinstance(learner, MetaLearner):
        raise ValueError(f"learner must be a metajax.MetaLearner, got {type(learner).__name__}.")
    if not isinstance(outer_opt, optax.GradientTransformation):
        raise ValueError(f"outer_opt must be an optax.GradientTransformation, got {type(outer_opt).__name__}.")

    meta_grad = learner.meta_grad
    if mesh is not None:
        from metajax._src.sharding import shard_meta_grad

        meta_grad = shard_meta_grad(learner.meta_grad, mesh)

    def init(meta_params, model_state=None, key=None):
        if key is not None and not (hasattr(key, "shape") and hasattr(key, "dtype")):
            raise ValueError(f"key must be a PRNG key (jax.random.key or PRNGKey), got {key!r}.")
        return MetaState(outer_opt.init(meta_params), jnp.zeros((), jnp.int32), model_state, key)

    def step(meta_params, state, tasks):
        keys = None
        if state.key is not None:
            num = jax.tree_util.tree_leaves(tasks)[0].shape[0]
            keys = jax.random.split(jax.random.fold_in(state.key, state.step), num)
        direction, metrics, model_state = meta_grad(
            meta_params, tasks, MetaContext(state.step, state.model_state, keys)
        )
        updates, opt_state = outer_opt.update(direction, state.opt_state, meta_params)
        new_params = optax.apply_updates(meta_params, updates)
        norm = optax.tree.norm(direction)
        metrics = dict(metrics, grad_norm=norm)
        if skip_nonfinite:
            ok = jnp.isfinite(norm)
            keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
            new_params, opt_state = keep(new_params, meta_params), keep(opt_state, state.opt_state)
            model_state = keep(model_state, state.model_state)
            metrics["skipped"] = (~ok).astype(jnp.int32)
        return new_params, MetaState(opt_state, state.step + 1, model_state, state.key), metrics

    return MetaStep(init, step)


def make_train_loop(
    meta_step: MetaStep,
    sample_tasks: Callable[..., Task],
    num_steps: int,
) -> Callable[..., tuple[MetaParams, MetaState, Metrics]]:
    """Fuse ``num_steps`` meta-steps with on-device task sampling into one scan.

    Small workloads (sinusoid) are dominated by per-call dispatch; running a
    chunk of steps inside one compiled call removes it.

    Args:
      meta_step: from :func:`make_meta_step`.
      sample_tasks: ``sample_tasks(key, *data) -> Task`` batch, traceable.
      num_steps: meta-steps per call.

    Returns:
      ``run(meta_params, state, key, *data) -> (meta_params, state, metrics)``
      (``data``, e.g. the device-resident image array, is passed as an
      argument rather than closed over, so it is not baked into the program) with
      metrics stacked along a leading axis of length ``num_steps``; the key of
      step ``s`` is ``fold_in(key, s)``, so chunking does not change results.
    """
    num_steps = check_positive_int("num_steps", num_steps)

    def run(meta_params, state, key, *data):
        def body(carry, _):
            mp, st = carry
            tasks = sample_tasks(jax.random.fold_in(key, st.step), *data)
            mp, st, metrics = meta_step.step(mp, st, tasks)
            return (mp, st), metrics

        (meta_params, state), metrics = jax.lax.scan(body, (meta_params, state), None, length=num_steps)
        return meta_params, state, metrics

    return run
