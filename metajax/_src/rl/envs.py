"""Environments as pure functions of a task.

An :class:`Environment` is a named tuple of pure functions. The task (a goal, the arm means of a bandit, a pole
length) is an explicit pytree argument of ``reset`` and ``step``, as the environment parameters of gymnax and brax
are: a batch of tasks is the same pytree with a leading task axis, and rollouts ``vmap`` over it.

* ``reset(key, task) -> (state, obs)``;
* ``step(state, action, task) -> (state, obs, reward, done)``: deterministic given the state; an environment with
  random transitions or rewards draws what it needs in ``reset`` and keeps it in ``state`` (the bandit does);
* ``sample_tasks(key, n) -> tasks``: ``n`` tasks stacked along a leading axis.

Built in: :func:`navigation2d` (Finn, Abbeel & Levine 2017), :func:`bernoulli_bandit` (Duan et al. 2016) and
:func:`cartpole` (Barto, Sutton & Anderson 1983, with a distribution over masses and pole length). Bring your own
environment by filling an :class:`Environment` with the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax._src.base import check_positive_int

ACTION_KINDS = ("discrete", "continuous")


class ActionSpace(NamedTuple):
    """What a policy must output.

    Attributes:
      kind: ``"discrete"`` (an integer action in ``0 .. dim - 1``) or ``"continuous"`` (a vector of ``dim`` reals).
      dim: the number of actions (discrete) or the action dimension (continuous).
      low, high: the bounds the environment maps or clips continuous actions to (``None`` for discrete actions).
        The policy's own actions are unbounded; the environment clips or rescales them.
    """

    kind: str
    dim: int
    low: float | None = None
    high: float | None = None


class Environment(NamedTuple):
    """An environment as pure functions of a task (see the module docstring).

    Attributes:
      reset: ``reset(key, task) -> (state, obs)``, ``obs`` of shape ``(obs_dim,)``.
      step: ``step(state, action, task) -> (state, obs, reward, done)`` with a scalar reward and a boolean ``done``.
      sample_tasks: ``sample_tasks(key, n) -> tasks`` with a leading task axis of size ``n``.
      obs_dim: the observation size.
      action_space: an :class:`ActionSpace`.
      horizon: the default episode length (time limit).
      task_spec: one task's shapes and dtypes, a pytree of ``jax.ShapeDtypeStruct`` (checked by :func:`check_env_task`).
      name: the environment's name.
    """

    reset: Callable[[jax.Array, Any], tuple[Any, jax.Array]]
    step: Callable[[Any, jax.Array, Any], tuple[Any, jax.Array, jax.Array, jax.Array]]
    sample_tasks: Callable[[jax.Array, int], Any]
    obs_dim: int
    action_space: ActionSpace
    horizon: int
    task_spec: Any
    name: str


def _float() -> Any:
    return jnp.result_type(float)


def _shapes(tree: Any) -> list[tuple[int, ...]]:
    return [tuple(jnp.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]


def check_env_task(env: Environment, task: Any, argname: str = "task", batched: bool = False) -> int | None:
    """Check that ``task`` has the structure and shapes of ``env.task_spec`` (with a leading axis when ``batched``).

    Runs at trace time on static shapes.

    Returns:
      The size of the leading task axis when ``batched``, else ``None``.

    Raises:
      ValueError: naming ``argname``, the shapes expected and the shapes received.
    """
    spec_def = jax.tree_util.tree_structure(env.task_spec)
    spec = _shapes(env.task_spec)
    what = "a batch of tasks with a leading task axis and per-task shapes" if batched else "per-task shapes"
    try:
        task_def = jax.tree_util.tree_structure(task)
    except Exception:  # noqa: BLE001 - anything that is not a pytree
        task_def = None
    if task_def != spec_def:
        raise ValueError(f"{argname} must be {env.name}'s task: {what} {spec} ({spec_def}), got {task!r}.")
    got = _shapes(task)
    if batched:
        leads = {s[0] if s else None for s in got}
        if len(leads) != 1 or None in leads or [s[1:] for s in got] != spec:
            raise ValueError(
                f"{argname} must be a batch of {env.name} tasks: shapes (num_tasks, *{spec}), got {got}. "
                "Is the task axis missing?"
            )
        return leads.pop()
    if got != spec:
        raise ValueError(f"{argname} must be one {env.name} task of shapes {spec}, got {got}.")
    return None


# ---------------------------------------------------------------------------
# 2D navigation (Finn, Abbeel & Levine 2017).
# ---------------------------------------------------------------------------

NAVIGATION_ACTIONS = ("normalized", "clipped")
NAVIGATION_MAX_SPEED = 0.1
NAVIGATION_TOLERANCE = 0.01


def navigation2d(actions: str = "normalized", low: float = -0.5, high: float = 0.5, horizon: int = 100) -> Environment:
    """The 2D point-robot navigation tasks of the MAML paper.

    A point starts at the origin and moves by its (bounded) action at every step; the task is a goal drawn
    uniformly from ``[low, high]^2``. The reward is minus the Euclidean distance from the new position to the
    goal, and the episode ends when both coordinates are within 0.01 of the goal (as in the MAML paper's code,
    ``maml_examples/point_env_randgoal.py``). The observation is the position.

    Two action conventions give very different returns, so a result must say which it used:

    * ``"normalized"`` (the MAML paper's code, which wraps the environment in rllab's ``normalize``): the policy
      acts in ``[-1, 1]``, rescaled to ``[-0.1, 0.1]`` (``0.1 * clip(a, -1, 1)``);
    * ``"clipped"`` (tristandeleu/pytorch-maml-rl): raw actions clipped to ``[-0.1, 0.1]``.

    Args:
      actions: ``"normalized"`` or ``"clipped"``.
      low, high: the goal distribution's bounds.
      horizon: the episode length (100 in the paper).

    Returns:
      An :class:`Environment` whose task is the goal, shape ``(2,)``.

    >>> env = navigation2d()
    >>> state, obs = env.reset(jax.random.PRNGKey(0), jnp.array([0.3, 0.0]))
    >>> state, obs, reward, done = env.step(state, jnp.array([1.0, 0.0]), jnp.array([0.3, 0.0]))
    >>> round(float(reward), 3), bool(done)
    (-0.2, False)

    References:
      Finn, Abbeel, Levine (2017). Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML.
    """
    if actions not in NAVIGATION_ACTIONS:
        raise ValueError(f"actions must be one of {NAVIGATION_ACTIONS}, got {actions!r}.")
    horizon = check_positive_int("horizon", horizon)
    if not low < high:
        raise ValueError(f"the goal bounds must satisfy low < high, got low={low!r}, high={high!r}.")
    scale = NAVIGATION_MAX_SPEED

    def to_velocity(action):
        if actions == "normalized":
            # rllab's normalize: lb + (a + 1) (ub - lb) / 2, then clipped to [lb, ub]; for [-0.1, 0.1] that is 0.1 a.
            return jnp.clip(scale * action, -scale, scale)
        return jnp.clip(action, -scale, scale)

    def reset(key, task):
        del key
        position = jnp.zeros_like(task)
        return position, position

    def step(state, action, task):
        position = state + to_velocity(action).astype(state.dtype)
        offset = position - task
        reward = -jnp.sqrt(jnp.sum(jnp.square(offset)))
        done = jnp.all(jnp.abs(offset) < NAVIGATION_TOLERANCE)
        return position, position, reward, done

    def sample_tasks(key, n):
        return jax.random.uniform(key, (n, 2), _float(), low, high)

    bounds = (-1.0, 1.0) if actions == "normalized" else (-scale, scale)
    return Environment(
        reset=reset,
        step=step,
        sample_tasks=sample_tasks,
        obs_dim=2,
        action_space=ActionSpace("continuous", 2, *bounds),
        horizon=horizon,
        task_spec=jax.ShapeDtypeStruct((2,), _float()),
        name=f"navigation2d-{actions}",
    )


# ---------------------------------------------------------------------------
# K-armed Bernoulli bandit (Duan et al. 2016; the bandit configs of pytorch-maml-rl).
# ---------------------------------------------------------------------------


def bernoulli_bandit(num_arms: int = 5) -> Environment:
    """A K-armed Bernoulli bandit: one-step episodes; the task is the arms' success probabilities.

    Pulling arm ``i`` gives reward 1 with probability ``task[i]`` and 0 otherwise; the episode ends at once and
    the observation is always ``[0.]``. Tasks draw every mean uniformly from ``[0, 1]``. The reward's randomness is
    drawn by ``reset`` (one uniform number kept as the state), so ``step`` stays a deterministic function. The
    expected return of a policy is exactly ``sum_i pi(i) task[i]``, which the exactness tests use.

    Args:
      num_arms: the number of arms K.

    Returns:
      An :class:`Environment` whose task is the vector of means, shape ``(num_arms,)``.

    >>> env = bernoulli_bandit(3)
    >>> state, obs = env.reset(jax.random.PRNGKey(0), jnp.array([0.0, 1.0, 0.5]))
    >>> float(env.step(state, jnp.int32(1), jnp.array([0.0, 1.0, 0.5]))[2])
    1.0

    References:
      Duan, Schulman, Chen, Bartlett, Sutskever, Abbeel (2016). RL^2: Fast Reinforcement Learning via Slow
      Reinforcement Learning. arXiv:1611.02779.
    """
    num_arms = check_positive_int("num_arms", num_arms, minimum=2)

    def reset(key, task):
        u = jax.random.uniform(key, (), jnp.result_type(task))
        return u, jnp.zeros((1,), jnp.result_type(task))

    def step(state, action, task):
        reward = (state < task[action]).astype(jnp.result_type(task))
        return state, jnp.zeros((1,), reward.dtype), reward, jnp.array(True)

    def sample_tasks(key, n):
        return jax.random.uniform(key, (n, num_arms), _float())

    return Environment(
        reset=reset,
        step=step,
        sample_tasks=sample_tasks,
        obs_dim=1,
        action_space=ActionSpace("discrete", num_arms),
        horizon=1,
        task_spec=jax.ShapeDtypeStruct((num_arms,), _float()),
        name=f"bernoulli_bandit-{num_arms}",
    )


# ---------------------------------------------------------------------------
# CartPole with a task distribution over its masses and pole length.
# ---------------------------------------------------------------------------


class CartPoleTask(NamedTuple):
    """One CartPole task: the physical parameters that vary (scalars, or with a leading task axis).

    Attributes:
      masscart: the cart's mass (1.0 in the classic task).
      masspole: the pole's mass (0.1).
      length: half the pole's length (0.5), as in the classic equations.
    """

    masscart: jax.Array
    masspole: jax.Array
    length: jax.Array


CARTPOLE_GRAVITY = 9.8
CARTPOLE_FORCE = 10.0
CARTPOLE_TAU = 0.02
CARTPOLE_THETA_LIMIT = 12 * 2 * jnp.pi / 360
CARTPOLE_X_LIMIT = 2.4


def cartpole_task(masscart: float = 1.0, masspole: float = 0.1, length: float = 0.5) -> CartPoleTask:
    """A :class:`CartPoleTask`; the defaults are the classic task (Barto, Sutton & Anderson 1983; gym, gymnax)."""
    f = _float()
    return CartPoleTask(jnp.asarray(masscart, f), jnp.asarray(masspole, f), jnp.asarray(length, f))


def cartpole(
    masscart: tuple[float, float] = (0.5, 2.0),
    masspole: tuple[float, float] = (0.05, 0.5),
    length: tuple[float, float] = (0.25, 1.0),
    horizon: int = 500,
) -> Environment:
    """CartPole (the dynamics of gym's and gymnax's ``CartPole-v1``) with a distribution over its physics.

    Two actions push the cart left or right with a force of 10; the reward is 1 for every step, including the one
    that ends the episode (the pole beyond 12 degrees or the cart beyond 2.4). The state and the observation are
    ``(x, x_dot, theta, theta_dot)``, drawn uniformly from ``[-0.05, 0.05]`` at reset, and the equations are
    integrated with explicit Euler steps of 0.02 s, as in gym. A task is a :class:`CartPoleTask`; tasks draw each
    parameter uniformly from its range. The derived quantities (total mass, pole mass times length) are recomputed
    from the task at every step, so varying a mass changes every term it enters (gymnax keeps them as separate
    fields that must be updated by hand).

    Args:
      masscart, masspole, length: ``(low, high)`` ranges of the sampled tasks (``length`` is half the pole).
      horizon: the time limit (500 in ``CartPole-v1``).

    Returns:
      An :class:`Environment` with two discrete actions and ``CartPoleTask`` tasks of scalars.

    >>> env = cartpole()
    >>> state, obs = env.reset(jax.random.PRNGKey(0), cartpole_task())
    >>> obs.shape
    (4,)

    References:
      Barto, Sutton, Anderson (1983). Neuronlike adaptive elements that can solve difficult learning control
      problems. IEEE Transactions on Systems, Man, and Cybernetics.
    """
    horizon = check_positive_int("horizon", horizon)
    for name, bounds in (("masscart", masscart), ("masspole", masspole), ("length", length)):
        if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
            raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high, got {bounds!r}.")

    def reset(key, task):
        s = jax.random.uniform(key, (4,), jnp.result_type(task.length), -0.05, 0.05)
        return s, s

    def step(state, action, task):
        x, x_dot, theta, theta_dot = state[0], state[1], state[2], state[3]
        total_mass = task.masscart + task.masspole
        polemass_length = task.masspole * task.length
        force = jnp.where(action == 1, CARTPOLE_FORCE, -CARTPOLE_FORCE).astype(state.dtype)
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
        theta_acc = (CARTPOLE_GRAVITY * sin - cos * temp) / (
            task.length * (4.0 / 3.0 - task.masspole * cos**2 / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        new = jnp.stack(
            [
                x + CARTPOLE_TAU * x_dot,
                x_dot + CARTPOLE_TAU * x_acc,
                theta + CARTPOLE_TAU * theta_dot,
                theta_dot + CARTPOLE_TAU * theta_acc,
            ]
        ).astype(state.dtype)
        done = (jnp.abs(new[0]) > CARTPOLE_X_LIMIT) | (jnp.abs(new[2]) > CARTPOLE_THETA_LIMIT)
        return new, new, jnp.ones((), state.dtype), done

    def sample_tasks(key, n):
        keys = jax.random.split(key, 3)
        draw = lambda k, r: jax.random.uniform(k, (n,), _float(), r[0], r[1])  # noqa: E731
        return CartPoleTask(draw(keys[0], masscart), draw(keys[1], masspole), draw(keys[2], length))

    scalar = jax.ShapeDtypeStruct((), _float())
    return Environment(
        reset=reset,
        step=step,
        sample_tasks=sample_tasks,
        obs_dim=4,
        action_space=ActionSpace("discrete", 2),
        horizon=horizon,
        task_spec=CartPoleTask(scalar, scalar, scalar),
        name="cartpole",
    )
