r"""Surrogate objectives: the one place where the sampling distribution's dependence on the parameters is handled.

Trajectories are sampled with ``stop_gradient`` on the parameters, so autodiff alone sees only the log-probabilities
that a surrogate puts in. What a surrogate puts in decides which meta-gradient is estimated.

The meta-objective of MAML for RL with one inner step (Finn et al. 2017) is the expected return after adaptation,

.. math:: F(\theta) = \mathbb{E}_{S \sim \pi_\theta}\big[J(\theta + \alpha\,\hat g_\theta(S))\big],
   \qquad \hat g_\theta(S) = \nabla_\theta \tfrac1N \textstyle\sum_i \tfrac1{T_i}\sum_t \log\pi_\theta(a_{it}|s_{it})
   A_{it},

where the support batch :math:`S` is sampled from the policy itself and :math:`J` is the expected (discounted)
return. Its gradient has two parts,

.. math:: \nabla F = \mathbb{E}_S\big[(I + \alpha \nabla_\theta \hat g_\theta(S))^\top \nabla J(\theta')
   + \nabla_\theta \log P_\theta(S)\, J(\theta')\big],

and differentiating the plain REINFORCE surrogate twice (the original implementation) drops the second one: the
dependence of the support distribution on :math:`\theta` (Al-Shedivat et al. 2018; Foerster et al. 2018;
Rothfuss et al. 2019).

Estimators (:data:`ESTIMATORS`):

* ``"dice"``: exact. The inner update is the plain score-function gradient :math:`\hat g_\theta(S)` (an ordinary
  function of :math:`\theta` given :math:`S`, so its Jacobian is exact), and the post-adaptation objective is the
  DiCE objective of the whole stochastic computation graph (Foerster et al. 2018): every query reward is weighted
  by the magic box :math:`\boxdot(\log P(S) + \sum_{t' \le t} \log\pi_{\theta'}(a_{t'}|s_{t'}))`, with the baseline
  term of Mao et al. (2019) for variance. The magic box :math:`\boxdot(x) = e^{x - \bot x}` is 1 in value and
  gives the score function when differentiated, to any order, so the gradient of this objective is an unbiased
  estimate of :math:`\nabla F` (its mean over sampled batches equals :math:`\nabla F`; ``tests/test_rl_exactness.py``
  checks it against exact enumeration on a bandit). Its price is variance: the support term has no baseline.
* ``"lvc"``: ProMP's low-variance curvature estimator (Rothfuss et al. 2019): the inner surrogate weights each
  step's advantage by :math:`\pi_\theta / \bot\pi_\theta`, whose Hessian adds each step's own score outer
  product (no cross-time terms). Lower variance, biased.
* ``"reinforce"``: the plain surrogate :math:`\log\pi \cdot A` differentiated twice, as in the MAML paper's code and
  pytorch-maml-rl; biased (it misses the support term), kept for comparison.

The outer surrogate of ``"lvc"`` and ``"reinforce"`` is TRPO's importance-ratio surrogate with pytorch-maml-rl's
weighting (each trajectory's mean over its steps, then the mean over trajectories); ``"dice"`` uses the
discounted DiCE objective summed over time. First-order variants (FOMAML) put ``stop_gradient`` on the inner
gradient and drop the support term; :func:`metajax._src.rl.maml_rl.maml_rl` takes ``gradient="first_order"``.

References:
  Finn, Abbeel, Levine (2017). Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML.
  Al-Shedivat et al. (2018). Continuous Adaptation via Meta-Learning in Nonstationary and Competitive
  Environments. ICLR.
  Foerster, Farquhar, Al-Shedivat, Rocktäschel, Xing, Whiteson (2018). DiCE: The Infinitely Differentiable Monte
  Carlo Estimator. ICML.
  Mao, Foerster, Rocktäschel, Al-Shedivat, Farquhar, Whiteson (2019). A Baseline for Any Order Gradient
  Estimation in Stochastic Computation Graphs. ICML.
  Rothfuss, Lee, Clavera, Asfour, Abbeel (2019). ProMP: Proximal Meta-Policy Search. ICLR.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metajax._src.rl.returns import Advantages, trajectory_mean

ESTIMATORS = ("dice", "lvc", "reinforce")


def check_estimator(estimator: str) -> str:
    """``estimator`` if it is one of :data:`ESTIMATORS`, else a ``ValueError``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}.")
    return estimator


def magic_box(x: jax.Array) -> jax.Array:
    """DiCE's magic box :math:`\\boxdot(x) = \\exp(x - \\bot x)`: 1 in value, :math:`\\boxdot(x)\\nabla x` in gradient.

    >>> float(magic_box(jnp.array(3.0))), float(jax.grad(magic_box)(3.0))
    (1.0, 1.0)
    """
    return jnp.exp(x - jax.lax.stop_gradient(x))


def inner_surrogate(estimator: str, log_probs: jax.Array, advantages: jax.Array, masks: jax.Array) -> jax.Array:
    """The inner (adaptation) objective to *maximise* on one task's support batch ``(N, T)``.

    ``"dice"`` and ``"reinforce"``: :math:`\\frac1N\\sum_i \\frac1{T_i}\\sum_t \\log\\pi(a_{it}|s_{it}) A_{it}` (the
    surrogate of pytorch-maml-rl's ``reinforce_loss``); ``"lvc"``: the same with :math:`\\log\\pi` replaced by
    :math:`\\pi/\\bot\\pi` (equal gradient, ProMP's Hessian).
    """
    check_estimator(estimator)
    weight = magic_box(log_probs) if estimator == "lvc" else log_probs
    return jnp.mean(trajectory_mean(weight * advantages, masks))


def support_log_weight(estimator: str, log_probs: jax.Array, masks: jax.Array) -> jax.Array:
    """The support batch's contribution to the DiCE log-weight: :math:`\\log P(S) - \\bot\\log P(S)` for ``"dice"``.

    Zero in value; its gradient is the score of the whole support batch (every step of every trajectory, since the
    adapted parameters depend on all of them). ``0`` (no gradient) for the other estimators.
    """
    check_estimator(estimator)
    if estimator != "dice":
        return jnp.zeros((), log_probs.dtype)
    total = jnp.sum(log_probs * masks)
    return total - jax.lax.stop_gradient(total)


def dice_objective(
    log_probs: jax.Array,
    rewards: jax.Array,
    values: jax.Array,
    masks: jax.Array,
    gamma: float,
    log_weight: jax.Array | float = 0.0,
) -> jax.Array:
    """The DiCE objective with the Mao et al. baseline on a batch ``(N, T)``, mean over trajectories.

    .. math:: \\frac1N\\sum_i\\Big[\\sum_t \\boxdot\\big(w + \\textstyle\\sum_{t'\\le t}\\log\\pi_{it'}\\big)
       \\gamma^t r_{it} + \\sum_t \\big(1 - \\boxdot(\\log\\pi_{it})\\big)\\gamma^t b_{it}\\Big]

    Its value is the mean discounted return; derivatives of any order are unbiased estimates of those of the
    expected discounted return (the baseline term is zero in expectation at every order). ``log_weight`` is the
    log-likelihood of upstream samples (e.g. :func:`support_log_weight`) with value 0.
    """
    discounts = gamma ** jnp.arange(masks.shape[-1], dtype=rewards.dtype)
    discounts = jnp.broadcast_to(discounts, masks.shape)
    cumulative = jnp.cumsum(log_probs * masks, axis=-1)
    rewards_term = jnp.sum(magic_box(log_weight + cumulative) * discounts * rewards * masks, axis=-1)
    baseline_term = jnp.sum((1.0 - magic_box(log_probs)) * discounts * values * masks, axis=-1)
    return jnp.mean(rewards_term + baseline_term)


def outer_surrogate(
    estimator: str,
    log_probs: jax.Array,
    rewards: jax.Array,
    masks: jax.Array,
    advantages: Advantages,
    gamma: float,
    log_weight: jax.Array | float = 0.0,
) -> jax.Array:
    """The post-adaptation objective to *maximise* on one task's query batch ``(M, T)``.

    ``"dice"``: :func:`dice_objective` with the support's ``log_weight``; ``"lvc"``, ``"reinforce"``: the
    importance-ratio surrogate :func:`ratio_surrogate` at the sampling parameters (ratio :math:`\\boxdot(\\log\\pi)`,
    1 in value), whose gradient is :math:`\\frac1M\\sum_i\\frac1{T_i}\\sum_t \\nabla\\log\\pi\\,A`.
    """
    check_estimator(estimator)
    if estimator == "dice":
        return dice_objective(log_probs, rewards, advantages.values, masks, gamma, log_weight)
    return jnp.mean(trajectory_mean(magic_box(log_probs) * advantages.advantages, masks))


def ratio_surrogate(
    log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array, masks: jax.Array
) -> jax.Array:
    """TRPO's surrogate :math:`\\frac1M\\sum_i\\frac1{T_i}\\sum_t \\frac{\\pi(a|s)}{\\pi_{old}(a|s)} A` (to maximise).

    Evaluated away from the sampling parameters (the line search), unlike the magic-box objectives above whose
    value never changes.

    References:
      Schulman, Levine, Moritz, Jordan, Abbeel (2015). Trust Region Policy Optimization. ICML.
    """
    ratio = jnp.exp(log_probs - jax.lax.stop_gradient(old_log_probs))
    return jnp.mean(trajectory_mean(ratio * advantages, masks))
