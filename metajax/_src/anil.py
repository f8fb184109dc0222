"""ANIL: almost no inner loop (only the head is adapted)."""

from __future__ import annotations

from typing import Any

import optax

from metajax._src.base import LossFn, MetaLearner
from metajax._src.inner import Selector, select_mask
from metajax._src.maml import maml


def anil(
    loss_fn: LossFn,
    inner_opt: str | optax.GradientTransformation | None = None,
    num_inner_steps: int = 1,
    *,
    head: Selector,
    **kwargs: Any,
) -> MetaLearner:
    """ANIL: MAML whose inner loop adapts only the ``head`` subtree.

    The body is meta-learned (it receives meta-gradients, exact ones through
    the head's inner updates) but is frozen inside the inner loop, which makes
    the inner loop far cheaper.

    Args:
      loss_fn: as in :func:`maml`.
      inner_opt: as in :func:`maml`.
      num_inner_steps: as in :func:`maml`.
      head: (keyword-only, required) regular expression searched in each parameter's path (for
        ``{"params": {"Dense_2": ...}}`` the paths are ``params/Dense_2/kernel``
        and ``params/Dense_2/bias``), or ``fn(path, leaf) -> bool``. It must
        match at least one parameter; checked in ``init`` and at trace time.
      kwargs: the keyword arguments of :func:`maml`.

    >>> import jax.numpy as jnp
    >>> learner = anil(lambda p, b: jnp.mean((b[0] * p["w"] + p["b"] - b[1]) ** 2), head="^b$")
    >>> learner.init({"w": jnp.ones(()), "b": jnp.zeros(())})["b"]
    Array(0., dtype=float32)

    References:
      Raghu, Raghu, Bengio, Vinyals (2020). Rapid Learning or Feature Reuse?
      Towards Understanding the Effectiveness of MAML. ICLR.
    """
    learner = maml(loss_fn, inner_opt, num_inner_steps, head=head, **kwargs)

    def init(params):
        select_mask(params, head)  # raise now, before any compilation
        return params

    name = "anil" if learner.name == "maml" else f"anil-{learner.name}"
    return learner._replace(init=init, name=name)
