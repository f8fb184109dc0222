"""The algorithm registry of the application layer: one entry per name the configs can ask for.

A config's ``algorithm`` is looked up here and nowhere else: the entry says which factory builds the learner
from the config's ``inner`` section, which keys of that section it reads, whether ``inner.gradient`` chooses
its gradient strategy (the memory planner's candidates) and whether its model has state (running statistics;
its runs carry a model state and a key in the meta-state). A new algorithm is a module in ``_src`` with its
factory plus one entry in :data:`REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

from metajax._src.anil import anil
from metajax._src.base import MetaLearner, check_learning_rate
from metajax._src.inner import adam
from metajax._src.maml import fomaml, imaml, maml
from metajax._src.mamlpp import maml_plus_plus
from metajax._src.meta_sgd import meta_sgd
from metajax._src.reptile import reptile


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """How the application layer builds and runs one algorithm.

    Attributes:
      name: the config's ``algorithm`` value.
      build: ``build(loss_fn, inner, opt, common) -> MetaLearner``: ``inner`` is the config's ``inner``
        section, ``opt`` the inner optimiser it names (a name or an Optax transformation), ``common`` the
        keyword arguments every factory takes (``has_aux``, ``query_loss_fn``, ``task_spec``, ``task_chunk``).
      inner_keys: the keys of ``inner`` the factory reads (beyond ``opt``, ``lr`` and ``steps``).
      takes_gradient: whether ``inner.gradient`` chooses how its meta-gradient crosses the inner loop.
      stateful: whether its model has state (running statistics, per-step batch norm) and its loss takes the
        model state, the inner step and a key: its runs keep the model state and a PRNG key in the meta-state.
      reference: the paper, for ``--help`` and the docs.
    """

    name: str
    build: Callable[[Callable, Any, Any, dict[str, Any]], MetaLearner]
    inner_keys: tuple[str, ...] = ()
    takes_gradient: bool = False
    stateful: bool = False
    reference: str = ""


def _batch(inner: Any) -> dict[str, Any]:
    return {"inner_batch_size": inner.get("batch_size")}


REGISTRY: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec(
            "maml",
            lambda loss_fn, inner, opt, common: maml(
                loss_fn, opt, inner.steps, inner_lr=inner.lr, gradient=inner.gradient, **common, **_batch(inner)
            ),
            ("gradient", "batch_size"),
            takes_gradient=True,
            reference="Finn, Abbeel, Levine (2017)",
        ),
        AlgorithmSpec(
            "fomaml",
            lambda loss_fn, inner, opt, common: fomaml(
                loss_fn, opt, inner.steps, inner_lr=inner.lr, **common, **_batch(inner)
            ),
            ("batch_size",),
            reference="Finn, Abbeel, Levine (2017); Nichol, Achiam, Schulman (2018)",
        ),
        AlgorithmSpec(
            "reptile",
            lambda loss_fn, inner, opt, common: reptile(
                loss_fn, opt, inner.steps, inner_lr=inner.lr, **common, **_batch(inner)
            ),
            ("batch_size", "b1"),
            reference="Nichol, Achiam, Schulman (2018)",
        ),
        AlgorithmSpec(
            "meta_sgd",
            lambda loss_fn, inner, opt, common: meta_sgd(
                loss_fn,
                None,
                inner.steps,
                inner_lr=inner.lr,
                granularity=inner.granularity,
                gradient=inner.gradient,
                **common,
            ),
            ("gradient", "granularity"),
            takes_gradient=True,
            reference="Li, Zhou, Chen, Li (2017)",
        ),
        AlgorithmSpec(
            "anil",
            lambda loss_fn, inner, opt, common: anil(
                loss_fn,
                opt,
                inner.steps,
                head=inner.head,
                inner_lr=inner.lr,
                gradient=inner.gradient,
                **common,
                **_batch(inner),
            ),
            ("gradient", "head", "batch_size"),
            takes_gradient=True,
            reference="Raghu, Raghu, Bengio, Vinyals (2020)",
        ),
        AlgorithmSpec(
            "imaml",
            lambda loss_fn, inner, opt, common: imaml(
                loss_fn,
                opt,
                inner.steps,
                inner_lr=inner.lr,
                lam=inner.get("lam", 1.0),
                cg_steps=inner.get("cg_steps", 5),
                **common,
                **_batch(inner),
            ),
            ("lam", "cg_steps", "batch_size"),
            reference="Rajeswaran, Finn, Kakade, Levine (2019)",
        ),
        AlgorithmSpec(
            "mamlpp",
            lambda loss_fn, inner, opt, common: maml_plus_plus(
                loss_fn,
                None,
                inner.steps,
                inner_lr=inner.lr,
                lslr=inner.get("lslr", True),
                msl_anneal_steps=inner.get("msl_anneal_steps"),
                first_order_steps=inner.get("first_order_steps", 0),
                gradient=inner.gradient,
                adapt=inner.get("adapt"),
                **common,
            ),
            ("gradient", "lslr", "msl_anneal_steps", "first_order_steps", "adapt"),
            takes_gradient=True,
            stateful=True,
            reference="Antoniou, Edwards, Storkey (2019)",
        ),
    )
}

ALGORITHMS = tuple(REGISTRY)
"""The names a config's ``algorithm`` may take."""


def algorithm_spec(name: str, argname: str = "algorithm") -> AlgorithmSpec:
    """The registry entry of ``name``; ``ValueError`` naming ``argname`` and the known names otherwise."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"{argname} must be one of {ALGORITHMS}, got {name!r}.")
    return REGISTRY[name]


def inner_optimizer(inner: Any) -> str | optax.GradientTransformation:
    """The inner optimiser an ``inner`` section names: its name, or Adam with another ``b1`` (Reptile's 0)."""
    if inner.opt == "adam" and inner.get("b1", 0.9) != 0.9:
        check_learning_rate("inner.lr", inner.lr)
        return adam(inner.lr, b1=inner.b1)
    return inner.opt


def build_learner(
    algorithm: str,
    loss_fn: Callable,
    inner: Any,
    task_spec: Any = None,
    has_aux: bool = False,
    query_loss_fn: Callable | None = None,
    task_chunk: int | None = None,
    **extra: Any,
) -> MetaLearner:
    """Build one of :data:`ALGORITHMS` from an ``inner`` config section.

    ``extra``: further keyword arguments of the factory (meta-RL passes ``stateful=True, state_gradient=True``:
    its losses draw rollouts with a key and carry the DiCE log-weight as the model state).
    """
    common = {"has_aux": has_aux, "query_loss_fn": query_loss_fn, "task_spec": task_spec, "task_chunk": task_chunk}
    common.update(extra)
    return algorithm_spec(algorithm).build(loss_fn, inner, inner_optimizer(inner), common)
