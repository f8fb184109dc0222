"""Experiments from configs, from Python: what ``metajax train`` and ``metajax eval`` do, one call at a time.

A config is an ``ml_collections.ConfigDict`` (``configs/*.py``, :func:`load_config`). :func:`run` does a whole
``metajax train`` (lock the run directory, build, meta-train with checkpoints, evaluate, plot, write the
summary); :func:`build` turns a config into an :class:`Experiment` (model, learner, outer optimiser, task
sampler, evaluation) without training, and :func:`meta_train` runs the training loop alone.
:func:`resolve_runtime` says where a config runs (meshes, task chunking, evaluation call size).

This is the only part of metajax that reads configs; everything it builds takes explicit arguments.
"""

from metajax._src.app.algorithms import ALGORITHMS, REGISTRY, AlgorithmSpec, algorithm_spec, build_learner
from metajax._src.app.configs import apply_overrides, available_configs, load_config
from metajax._src.app.experiment import TASKS, build
from metajax._src.app.experiment_base import Experiment, build_outer_opt
from metajax._src.app.fewshot import BN_POLICIES, FewShot
from metajax._src.app.rundir import RunDirectoryError, RunLock, load_params, save_params
from metajax._src.app.runtime import Runtime, resolve_runtime
from metajax._src.app.train import Interrupted, JsonLinesSink, MetricSink, TensorBoardSink, meta_train, run

__all__ = [
    "ALGORITHMS",
    "AlgorithmSpec",
    "BN_POLICIES",
    "Experiment",
    "FewShot",
    "Interrupted",
    "JsonLinesSink",
    "MetricSink",
    "REGISTRY",
    "RunDirectoryError",
    "RunLock",
    "Runtime",
    "TASKS",
    "TensorBoardSink",
    "algorithm_spec",
    "apply_overrides",
    "available_configs",
    "build",
    "build_learner",
    "build_outer_opt",
    "load_config",
    "load_params",
    "meta_train",
    "resolve_runtime",
    "run",
    "save_params",
]
