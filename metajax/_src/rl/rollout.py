"""Rollouts: ``lax.scan`` over time with done masks, ``vmap`` over trajectories (and, by the caller, over tasks).

Every trajectory runs for exactly ``horizon`` steps so that a batch is one array per field. After the step that
ends an episode the environment's state is frozen, the mask is 0 and the reward is 0: masked steps contribute
nothing to returns, baselines or surrogates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax._src.base import Params, check_positive_int
from metajax._src.rl.envs import Environment, check_env_task
from metajax._src.rl.policies import Policy, check_policy


class Trajectories(NamedTuple):
    """A batch of trajectories of fixed length ``T``; leading axes (e.g. trajectories, tasks) come first.

    Attributes:
      observations: the observation each action was taken at, shape ``(..., T, obs_dim)``.
      actions: shape ``(..., T)`` (int32, discrete) or ``(..., T, action_dim)``.
      rewards: shape ``(..., T)``, 0 where ``masks`` is 0.
      masks: 1.0 for the steps of the episode (the one that ends it included), 0.0 after; shape ``(..., T)``.
      log_probs: :math:`\\log \\pi(a_t | o_t)` under the parameters that sampled the actions, shape ``(..., T)``;
        constants (no gradient), the reference of importance ratios.
    """

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    masks: jax.Array
    log_probs: jax.Array


def _select(alive: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(alive, n, o), new, old)


def rollout(env: Environment, policy: Policy, params: Params, task: Any, key: jax.Array, horizon: int) -> Trajectories:
    """One trajectory of ``horizon`` steps of ``policy`` in ``env`` on ``task``.

    The actions are sampled with ``stop_gradient(params)``: the sampling distribution's dependence on the
    parameters is handled by the surrogate estimators (:mod:`metajax._src.rl.estimators`), never by
    differentiating through the sampler.

    Args:
      env: an :class:`~metajax._src.rl.envs.Environment`.
      policy: a :class:`~metajax._src.rl.policies.Policy` acting in ``env``'s action space.
      params: the policy's parameters.
      task: one task of ``env``.
      key: a PRNG key (reset and every action draw from it).
      horizon: the number of steps, a Python int >= 1.

    Returns:
      :class:`Trajectories` with a leading time axis of size ``horizon``.
    """
    horizon = check_positive_int("horizon", horizon)
    return _rollout(env, policy, params, task, jax.random.split(key, horizon + 1))


def _rollout(env: Environment, policy: Policy, params: Params, task: Any, keys: jax.Array) -> Trajectories:
    """:func:`rollout` from ``horizon + 1`` keys: the reset's, then one per step (drawn at once: cheaper to compile)."""
    params = jax.lax.stop_gradient(params)
    state, obs = env.reset(keys[0], task)

    def step(carry, k):
        state, obs, alive = carry
        action = policy.sample(params, k, obs)
        log_prob = policy.log_prob(params, obs, action)
        new_state, new_obs, reward, done = env.step(state, action, task)
        mask = alive.astype(jnp.result_type(reward))
        record = (obs, action, reward * mask, mask, log_prob)
        # After the episode ends the state and the observation stay where they were (the steps are masked out).
        carry = (_select(alive, new_state, state), jnp.where(alive, new_obs, obs), alive & ~done)
        return carry, record

    _, (observations, actions, rewards, masks, log_probs) = jax.lax.scan(step, (state, obs, jnp.array(True)), keys[1:])
    return Trajectories(observations, actions, rewards, masks, log_probs)


def sample_trajectories(
    env: Environment,
    policy: Policy,
    params: Params,
    task: Any,
    key: jax.Array,
    num_trajectories: int,
    horizon: int | None = None,
) -> Trajectories:
    """``num_trajectories`` independent trajectories on one task (``vmap`` of :func:`rollout` over keys).

    For a batch of tasks, ``vmap`` this function over ``task`` and ``key`` (see the example).

    Args:
      env, policy, params, task, key: as in :func:`rollout`.
      num_trajectories: the batch size, a Python int >= 1.
      horizon: the episode length; ``None`` uses ``env.horizon``.

    Returns:
      :class:`Trajectories` with leading axes ``(num_trajectories, horizon)``.

    Raises:
      ValueError: a task of the wrong shape, a horizon or batch size below 1, or a policy that does not act in the
        environment's action space (checked on shapes, before any compute).

    >>> from metajax._src.rl.envs import navigation2d
    >>> from metajax._src.rl.policies import gaussian_mlp
    >>> env, policy = navigation2d(), gaussian_mlp(2, (8,))
    >>> params = policy.init(jax.random.PRNGKey(0), env.obs_dim)
    >>> tasks = env.sample_tasks(jax.random.PRNGKey(1), 4)
    >>> keys = jax.random.split(jax.random.PRNGKey(2), 4)
    >>> sample = jax.jit(jax.vmap(lambda t, k: sample_trajectories(env, policy, params, t, k, 3, 10)))
    >>> batch = jax.eval_shape(sample, tasks, keys)  # shapes only; call sample(tasks, keys) to draw them
    >>> batch.observations.shape
    (4, 3, 10, 2)
    """
    horizon = env.horizon if horizon is None else horizon
    horizon = check_positive_int("horizon", horizon)
    num_trajectories = check_positive_int("num_trajectories", num_trajectories)
    check_env_task(env, task)
    check_policy(policy, env, params)
    keys = jax.random.split(key, (num_trajectories, horizon + 1))
    return jax.vmap(lambda k: _rollout(env, policy, params, task, k))(keys)


def trajectory_log_probs(policy: Policy, params: Params, trajectories: Trajectories) -> jax.Array:
    """:math:`\\log \\pi_{params}(a_t | o_t)` at every step of a batch ``(..., T)`` (differentiable in ``params``)."""
    fn = lambda o, a: policy.log_prob(params, o, a)  # noqa: E731
    for _ in range(trajectories.masks.ndim):
        fn = jax.vmap(fn)
    return fn(trajectories.observations, trajectories.actions)


def trajectory_dists(policy: Policy, params: Params, trajectories: Trajectories) -> Any:
    """The policy's distribution parameters at every observation of a batch (leading axes ``(..., T)``)."""
    fn = lambda o: policy.apply(params, o)  # noqa: E731
    for _ in range(trajectories.masks.ndim):
        fn = jax.vmap(fn)
    return fn(trajectories.observations)


def episode_returns(trajectories: Trajectories) -> jax.Array:
    """Undiscounted return of every trajectory (sum of rewards over the valid steps), shape ``(...)``."""
    return jnp.sum(trajectories.rewards * trajectories.masks, axis=-1)
