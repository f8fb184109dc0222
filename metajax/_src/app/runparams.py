"""What a run saves, validates and evaluates as its parameters: the meta-parameters, and the model state if any."""

from __future__ import annotations

from typing import Any, NamedTuple


class StatefulRunParams(NamedTuple):
    """What a run of a model with state (``mamlpp``) saves, evaluates and restores as its parameters: the
    meta-parameters and the model state (running statistics) beside them. A run of a model without state saves
    the meta-parameters alone (:func:`join_run_params`), as before models with state existed."""

    meta_params: Any
    model_state: Any


def split_run_params(run_params: Any) -> tuple[Any, Any]:
    """``(meta_params, model_state)`` of a run's parameters (``model_state`` ``None`` for a model without state)."""
    if isinstance(run_params, StatefulRunParams):
        return run_params.meta_params, run_params.model_state
    return run_params, None


def join_run_params(meta_params: Any, model_state: Any) -> Any:
    """The inverse of :func:`split_run_params`: what a run saves, validates and evaluates."""
    return meta_params if model_state is None else StatefulRunParams(meta_params, model_state)
