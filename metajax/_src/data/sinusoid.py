"""Sinusoid regression tasks (MAML paper, section 5.1), sampled on the device.

A task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5]``, phase
``phi ~ U[0, pi]`` and inputs ``x ~ U[-5, 5]``; ``shots`` support and
``query_shots`` query points are drawn independently. Everything is a pure
function of a PRNG key, so task batches are drawn inside ``jit``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax._src.base import Task, check_positive_int


class SinusoidConfig(NamedTuple):
    """Task distribution; the defaults are the MAML paper's."""

    amp_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, jnp.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)


MAML_SINUSOID = SinusoidConfig()


class SinusoidTaskParams(NamedTuple):
    amplitude: jax.Array
    phase: jax.Array


def sample_task_params(key: jax.Array, num_tasks: int, cfg: SinusoidConfig = MAML_SINUSOID) -> SinusoidTaskParams:
    """Draw ``num_tasks`` amplitudes and phases."""
    ka, kp = jax.random.split(key)
    amp = jax.random.uniform(ka, (num_tasks,), minval=cfg.amp_range[0], maxval=cfg.amp_range[1])
    phase = jax.random.uniform(kp, (num_tasks,), minval=cfg.phase_range[0], maxval=cfg.phase_range[1])
    return SinusoidTaskParams(amp, phase)


def sinusoid(tp: SinusoidTaskParams, x: jax.Array) -> jax.Array:
    """Evaluate each task's sine at ``x`` of shape ``(tasks, n, 1)``."""
    return tp.amplitude[:, None, None] * jnp.sin(x - tp.phase[:, None, None])


def tasks_from_params(
    key: jax.Array, tp: SinusoidTaskParams, shots: int, query_shots: int, cfg: SinusoidConfig = MAML_SINUSOID
) -> Task:
    """Draw support and query points for given task parameters."""
    n = tp.amplitude.shape[0]
    ks, kq = jax.random.split(key)
    xs = jax.random.uniform(ks, (n, shots, 1), minval=cfg.x_range[0], maxval=cfg.x_range[1])
    xq = jax.random.uniform(kq, (n, query_shots, 1), minval=cfg.x_range[0], maxval=cfg.x_range[1])
    return Task((xs, sinusoid(tp, xs)), (xq, sinusoid(tp, xq)))


def sample_tasks(
    key: jax.Array,
    meta_batch_size: int,
    shots: int = 10,
    query_shots: int | None = None,
    cfg: SinusoidConfig = MAML_SINUSOID,
) -> Task:
    """A batch of sinusoid tasks.

    Args:
      key: PRNG key.
      meta_batch_size: tasks in the batch.
      shots: support points per task (K).
      query_shots: query points per task (default: ``shots``).
      cfg: the task distribution.

    Returns:
      A :class:`Task` whose ``support`` and ``query`` are ``(x, y)`` with
      shapes ``(meta_batch_size, shots, 1)`` / ``(meta_batch_size, query_shots, 1)``.

    >>> t = sample_tasks(jax.random.PRNGKey(0), 4, shots=5)
    >>> t.support[0].shape, t.query[1].shape
    ((4, 5, 1), (4, 5, 1))
    """
    meta_batch_size = check_positive_int("meta_batch_size", meta_batch_size)
    shots = check_positive_int("shots", shots)
    query_shots = shots if query_shots is None else check_positive_int("query_shots", query_shots)
    kp, kx = jax.random.split(key)
    return tasks_from_params(kx, sample_task_params(kp, meta_batch_size, cfg), shots, query_shots, cfg)


def task_spec(shots: int, query_shots: int | None = None) -> Task:
    """Per-task shapes, for ``task_spec=`` checks."""
    q = shots if query_shots is None else query_shots
    s = jax.ShapeDtypeStruct((shots, 1), jnp.float32)
    qs = jax.ShapeDtypeStruct((q, 1), jnp.float32)
    return Task((s, s), (qs, qs))
