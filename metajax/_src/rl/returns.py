"""Returns, generalized advantage estimation and the linear feature baseline.

All functions take arrays with the time axis last (``(..., T)``, the layout of
:class:`~metajax._src.rl.rollout.Trajectories`) and respect the masks: rewards and values after an episode ends
count as 0, as in pytorch-maml-rl's ``BatchEpisodes``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax._src.rl.rollout import Trajectories

BASELINES = ("linear", "none")


def check_discount(name: str, value: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a number in [0, 1] (a discount or GAE lambda)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")


def _discount_matrix(length: int, factor: float, dtype) -> jax.Array:
    """``D[t, u] = factor**(u - t)`` for ``u >= t``, else 0: ``x @ D.T`` sums the discounted future of ``x``."""
    t = jnp.arange(length)
    lag = t[None, :] - t[:, None]
    return jnp.where(lag >= 0, jnp.asarray(factor, dtype) ** jnp.maximum(lag, 0).astype(dtype), 0).astype(dtype)


def _discounted_sum(x: jax.Array, factor: float) -> jax.Array:
    """:math:`y_t = \\sum_{u \\ge t} f^{u-t} x_u` over the last axis: one matrix product instead of a reverse scan
    (the horizons of meta-RL are short, and a product compiles and runs faster than a sequential loop)."""
    return x @ _discount_matrix(x.shape[-1], factor, x.dtype).T


def discounted_returns(rewards: jax.Array, masks: jax.Array, gamma: float) -> jax.Array:
    """Reward-to-go :math:`G_t = m_t r_t + \\gamma G_{t+1}` (``G_T = 0``) for arrays ``(..., T)``.

    >>> discounted_returns(jnp.array([1.0, 1.0, 1.0]), jnp.array([1.0, 1.0, 0.0]), 0.5).tolist()
    [1.5, 1.0, 0.0]
    """
    check_discount("gamma", gamma)
    return _discounted_sum(rewards * masks, gamma)


def gae(rewards: jax.Array, values: jax.Array, masks: jax.Array, gamma: float, gae_lambda: float) -> jax.Array:
    """Generalized advantage estimates :math:`A_t = \\sum_l (\\gamma\\lambda)^l \\delta_{t+l}` for ``(..., T)``.

    :math:`\\delta_t = r_t + \\gamma v_{t+1} - v_t` with the values masked (``v = 0`` after the episode and after
    the last step), as in pytorch-maml-rl's ``compute_advantages``. ``gae_lambda=1`` gives the reward-to-go minus
    the baseline; ``gae_lambda=0`` the one-step TD error.

    References:
      Schulman, Moritz, Levine, Jordan, Abbeel (2016). High-Dimensional Continuous Control Using Generalized
      Advantage Estimation. ICLR.

    >>> gae(jnp.array([1.0, 2.0]), jnp.array([0.5, 0.5]), jnp.ones(2), 1.0, 1.0).tolist()
    [2.5, 1.5]
    """
    check_discount("gamma", gamma)
    check_discount("gae_lambda", gae_lambda)
    values = values * masks
    next_values = jnp.concatenate([values[..., 1:], jnp.zeros_like(values[..., :1])], axis=-1)
    deltas = rewards * masks + gamma * next_values - values
    return _discounted_sum(deltas, gamma * gae_lambda) * masks


def baseline_features(observations: jax.Array, masks: jax.Array) -> jax.Array:
    """The linear baseline's features ``[o, o^2, t/100, (t/100)^2, (t/100)^3, 1]`` times the mask, ``(..., T, 2d+4)``.

    The features of rllab's and pytorch-maml-rl's ``LinearFeatureBaseline`` (Duan et al. 2016, supplementary
    material), with ``t`` the time step; masked steps get all-zero features so they do not enter the fit.
    """
    t = jnp.arange(masks.shape[-1], dtype=observations.dtype) / 100.0
    t = jnp.broadcast_to(t, masks.shape)[..., None]
    ones = jnp.ones_like(t)
    feats = jnp.concatenate([observations, jnp.square(observations), t, t**2, t**3, ones], axis=-1)
    return feats * masks[..., None].astype(feats.dtype)


LINEAR_BASELINE_REG = 1e-5
"""The ridge term of the linear baseline's normal equations (rllab and pytorch-maml-rl)."""


def fit_linear_baseline(
    observations: jax.Array, returns: jax.Array, masks: jax.Array, reg_coeff: float = LINEAR_BASELINE_REG
) -> jax.Array:
    """Least-squares coefficients of the linear feature baseline on a batch of trajectories (one task).

    Solves :math:`(X^\\top X + c I) w = X^\\top y` (Cholesky) over the valid steps of every trajectory of the
    batch. As in the references, while the solution is not finite the regulariser ``c`` is multiplied by 10, up to
    4 times (a ``lax.while_loop``).

    Args:
      observations: ``(N, T, obs_dim)`` (any leading axes: every one of them is pooled into the fit).
      returns: the regression targets (usually :func:`discounted_returns`), ``(N, T)``.
      masks: ``(N, T)``.
      reg_coeff: the initial ridge coefficient ``c``.

    Returns:
      The coefficients, shape ``(2 * obs_dim + 4,)``.
    """
    feats = baseline_features(observations, masks)
    x = feats.reshape(-1, feats.shape[-1])
    y = (returns * masks).reshape(-1)
    xtx, xty = x.T @ x, x.T @ y
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)

    def unsolved(carry):
        i, coeffs = carry
        return (i < 5) & ~jnp.all(jnp.isfinite(coeffs))

    def solve(carry):
        i, _ = carry
        reg = reg_coeff * jnp.asarray(10.0, x.dtype) ** i.astype(x.dtype)
        return i + 1, jax.scipy.linalg.solve(xtx + reg * eye, xty, assume_a="pos")

    _, coeffs = jax.lax.while_loop(unsolved, solve, (jnp.int32(0), jnp.full_like(xty, jnp.nan)))
    return coeffs


def linear_baseline(
    observations: jax.Array, returns: jax.Array, masks: jax.Array, reg_coeff: float = LINEAR_BASELINE_REG
) -> jax.Array:
    """Values of the linear feature baseline refitted in closed form on the batch, shape ``(..., T)``.

    >>> v = jax.jit(linear_baseline)(jnp.zeros((2, 3, 1)), jnp.ones((2, 3)), jnp.ones((2, 3)))
    >>> bool(jnp.allclose(v, 1.0, atol=1e-3))
    True

    References:
      Duan, Chen, Houthooft, Schulman, Abbeel (2016). Benchmarking Deep Reinforcement Learning for Continuous
      Control. ICML.
    """
    coeffs = fit_linear_baseline(observations, returns, masks, reg_coeff)
    return baseline_features(observations, masks) @ coeffs


def normalize_advantages(advantages: jax.Array, masks: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Advantages shifted and scaled over the valid steps, as pytorch-maml-rl's ``weighted_normalize``.

    The mean is the mean over trajectories of each trajectory's mean over its own steps; the standard deviation is
    computed the same way from the centred values; masked steps stay 0.
    """
    mean = jnp.mean(trajectory_mean(advantages, masks))
    centred = (advantages - mean) * masks
    std = jnp.sqrt(jnp.mean(trajectory_mean(jnp.square(centred), masks)))
    return centred / (std + eps)


def trajectory_mean(values: jax.Array, masks: jax.Array) -> jax.Array:
    """Each trajectory's mean over its valid steps, shape ``(...)`` for ``(..., T)`` (pytorch-maml-rl's weighting)."""
    return jnp.sum(values * masks, axis=-1) / jnp.maximum(jnp.sum(masks, axis=-1), 1.0)


class Advantages(NamedTuple):
    """What the surrogates need besides the log-probabilities; constants of the sampled batch, shapes ``(..., T)``.

    Attributes:
      advantages: the (possibly normalized) advantage estimates.
      values: the baseline's values (0 without a baseline).
      returns: the discounted reward-to-go.
    """

    advantages: jax.Array
    values: jax.Array
    returns: jax.Array


def compute_advantages(
    trajectories: Trajectories,
    gamma: float = 0.99,
    gae_lambda: float = 1.0,
    baseline: str = "linear",
    normalize: bool = True,
    reg_coeff: float = LINEAR_BASELINE_REG,
) -> Advantages:
    """Returns, baseline values and GAE advantages of one task's batch (leading axis: trajectories).

    The defaults are pytorch-maml-rl's 2D-navigation settings: the linear feature baseline refitted on this batch,
    GAE with :math:`\\lambda = 1` and normalized advantages. The result is a constant of the batch
    (``stop_gradient``): surrogates differentiate only the log-probabilities.

    Args:
      trajectories: one task's :class:`~metajax._src.rl.rollout.Trajectories`, leading axes ``(N, T)``.
      gamma: the discount.
      gae_lambda: GAE's :math:`\\lambda`.
      baseline: ``"linear"`` (refitted on this batch) or ``"none"``.
      normalize: normalize the advantages (:func:`normalize_advantages`).
      reg_coeff: the linear baseline's ridge coefficient.

    Raises:
      ValueError: ``gamma`` or ``gae_lambda`` outside [0, 1], or an unknown ``baseline``.
    """
    check_discount("gamma", gamma)
    check_discount("gae_lambda", gae_lambda)
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}.")
    traj = jax.lax.stop_gradient(trajectories)
    returns = discounted_returns(traj.rewards, traj.masks, gamma)
    if baseline == "linear":
        values = linear_baseline(traj.observations, returns, traj.masks, reg_coeff)
    else:
        values = jnp.zeros_like(returns)
    advantages = gae(traj.rewards, values, traj.masks, gamma, gae_lambda)
    if normalize:
        advantages = normalize_advantages(advantages, traj.masks)
    return Advantages(advantages, values * traj.masks, returns)
