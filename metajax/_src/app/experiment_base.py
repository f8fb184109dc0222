"""What an experiment is, apart from how a config builds it: the :class:`Experiment` record, the outer optimiser
of a config, and where a run's parameters and meta-state start.

The task-specific builders (:mod:`~metajax._src.app.experiment` for regression and few-shot classification,
:mod:`~metajax._src.app.rl` for meta-RL) stand on this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax

from metajax._src.app.algorithms import algorithm_spec
from metajax._src.app.runparams import join_run_params, split_run_params
from metajax._src.app.runtime import Runtime
from metajax._src.base import MetaLearner, Task, check_learning_rate
from metajax._src.inner import make_optimizer
from metajax._src.models import Model

NULL_NOTE = "null: not finite (a diverged task's loss makes a mean over all tasks infinite); JSON has no infinity"


def split_model_init(exp: Experiment, initialised: Any) -> tuple[Any, Any]:
    """``(params, model_state)`` of what ``exp.model.init`` returned (``model_state`` ``None`` without state)."""
    return initialised if exp.stateful else (initialised, None)


def model_init(exp: Experiment, key: jax.Array) -> tuple[Any, Any]:
    """``(params, model_state)`` of ``exp.model`` (``model_state`` ``None`` for a model without state)."""
    return split_model_init(exp, exp.model.init(key))


def initial_run_params(exp: Experiment, key: jax.Array, init: str | None = None, learner: Any = None) -> Any:
    """The parameters a run starts from: ``learner.init(model.init(key))`` (default: ``exp.learner``), with the
    model state when the model has one (:class:`StatefulRunParams`). ``init``: a ``metajax pretrain`` run
    directory whose backbone replaces the initial one (the head keeps its fresh initialisation; a per-step model
    takes it at every inner step, with fresh running statistics)."""
    learner = exp.learner if learner is None else learner
    params, state = model_init(exp, key)
    if init is not None:
        from metajax._src.app.rundir import load_backbone

        params = load_backbone(init, params, config=exp.config)
    return join_run_params(learner.init(params), state)


def initial_meta_state(exp: Experiment, meta_step: Any, run_params: Any, key: jax.Array) -> Any:
    """The meta-state a run starts from: a model with state also keeps its state and the run's key in it."""
    meta_params, model_state = split_run_params(run_params)
    return meta_step.init(meta_params, model_state, key if exp.stateful else None)


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, built from a config.

    ``sample_tasks(key, *data)`` draws a training task batch (``data`` holds
    device arrays passed into the compiled loop); ``evaluate(meta_params,
    run_dir, tag, progress=None)`` writes and returns the evaluation
    (``progress`` as for training); ``validate(meta_params)`` (optional)
    returns a score to maximise for best-checkpoint selection.
    """

    config: Any
    model: Model
    learner: MetaLearner
    outer_opt: optax.GradientTransformation
    loss_fn: Callable
    sample_tasks: Callable[..., Task]
    inner_opt: optax.GradientTransformation
    evaluate: Callable[..., dict[str, Any]]
    data: tuple = ()
    validate: Callable[..., float] | None = None
    """``validate(meta_params, on_chunk=None)``; ``on_chunk(done, total)`` reports its progress (tasks)."""
    held_out: Callable[[int, int], Task] | None = None
    """``held_out(num_tasks, seed)``: test tasks (sinusoid: fresh tasks; few-shot: test-split episodes)."""
    has_aux: bool = False
    runtime: Runtime | None = None
    """Where the run executes (:func:`~metajax._src.app.runtime.resolve_runtime`)."""
    host_data: dict[str, Any] | None = None
    """Splits kept on the host instead of in ``data`` (tiered-ImageNet: ``{split: RaggedClassImages}``)."""
    learner_for: Callable[[str | None, int | None], MetaLearner] | None = None
    """``learner_for(gradient, task_chunk)``: the training learner with another ``inner.gradient`` (``None``: the
    config's) and task chunk (``None``: vmap over all): the memory planner's candidates."""
    meta_step_for: Callable[..., Any] | None = None
    """``meta_step_for(learner, skip_nonfinite=False, mesh=None) -> MetaStep``: the outer step training uses
    instead of ``make_meta_step(learner, outer_opt, ...)`` (meta-RL's TRPO: an outer step that is no Optax
    optimiser); ``None``: :func:`~metajax._src.meta_step.make_meta_step`."""
    keeps_state: bool | None = None
    """Whether the run keeps a model state and a PRNG key in the meta-state (``None``: the algorithm's registry
    entry says; meta-RL runs keep the key for their rollouts and the DiCE log-weight as the state)."""
    loaded: Any = None
    """The data as loaded and placed (few-shot tasks), which :func:`~metajax._src.app.experiment.build`'s
    ``reuse`` hands to an experiment of the same data settings instead of reading it again."""

    @property
    def spec(self) -> Any:
        """The registry entry of the config's algorithm."""
        return algorithm_spec(self.config.algorithm)

    @property
    def stateful(self) -> bool:
        """Whether the run keeps a model state and a key in the meta-state (the model has state, or its losses
        draw randomness)."""
        return self.spec.stateful if self.keeps_state is None else self.keeps_state

    def make_meta_step(self, learner: Any = None, skip_nonfinite: bool = False, mesh: Any = None) -> Any:
        """The training meta-step of ``learner`` (default: ``self.learner``): ``meta_step_for`` when set, else
        :func:`~metajax._src.meta_step.make_meta_step` with ``outer_opt``."""
        from metajax._src.meta_step import make_meta_step

        learner = self.learner if learner is None else learner
        if self.meta_step_for is not None:
            return self.meta_step_for(learner, skip_nonfinite=skip_nonfinite, mesh=mesh)
        return make_meta_step(learner, self.outer_opt, skip_nonfinite=skip_nonfinite, mesh=mesh)

    @property
    def eval_mesh(self) -> Any:
        """The mesh evaluation splits its tasks over (``None``: one device)."""
        return None if self.runtime is None else self.runtime.eval_mesh


def build_outer_opt(outer: Any, num_steps: int) -> optax.GradientTransformation:
    """Outer optimiser; ``anneal`` decays the rate linearly to 0 (Reptile)."""
    check_learning_rate("outer.lr", outer.lr)
    schedule = outer.get("schedule", "constant")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"outer.schedule must be 'constant' or 'cosine', got {schedule!r}.")
    lr = optax.linear_schedule(outer.lr, 0.0, num_steps) if outer.anneal else outer.lr
    if schedule == "cosine":  # MAML++: cosine annealing from outer.lr to outer.min_lr over the run
        if outer.anneal:
            raise ValueError("outer.anneal (linear) and outer.schedule='cosine' exclude each other; choose one.")
        min_lr = outer.get("min_lr", 0.0)
        check_learning_rate("outer.min_lr", min_lr)
        lr = optax.cosine_decay_schedule(outer.lr, num_steps, alpha=min_lr / outer.lr if outer.lr else 0.0)
    return make_optimizer(outer.opt, lr, argnames=("outer.opt", "outer.lr"))
