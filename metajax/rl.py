"""Meta-reinforcement learning: environments as pure functions of a task, policies, rollouts, returns, the
meta-gradient estimators (exact DiCE, ProMP's LVC, plain REINFORCE) and TRPO.

* Environments (:class:`Environment`): :func:`navigation2d`, :func:`bernoulli_bandit`, :func:`cartpole`.
* Policies (:class:`Policy`): :func:`gaussian_mlp`, :func:`categorical_mlp`, :func:`policy_from_model`.
* Rollouts: :func:`rollout`, :func:`sample_trajectories` (:class:`Trajectories`, ``lax.scan`` with done masks).
* Returns: :func:`discounted_returns`, :func:`gae`, :func:`linear_baseline`, :func:`compute_advantages`.
* Estimators: :data:`ESTIMATORS`, :func:`magic_box`, :func:`inner_surrogate`, :func:`outer_surrogate`,
  :func:`dice_objective`, :func:`ratio_surrogate`.
* TRPO: :func:`trpo_step`, :func:`conjugate_gradient`.
* MAML for RL: :func:`maml_rl` (a :class:`MetaRL` of pure functions: the learners' stateful loss, the direct
  per-task meta-loss, the pieces of TRPO) and :func:`maml_trpo_step` (its KL product: :func:`gauss_newton_kl_hvp`).
"""

from metajax._src.rl.envs import (
    ActionSpace,
    CartPoleTask,
    Environment,
    bernoulli_bandit,
    cartpole,
    cartpole_task,
    check_env_task,
    navigation2d,
)
from metajax._src.rl.estimators import (
    ESTIMATORS,
    dice_objective,
    inner_surrogate,
    magic_box,
    outer_surrogate,
    ratio_surrogate,
    support_log_weight,
)
from metajax._src.rl.maml_rl import (
    AdvantageSpec,
    MAMLTRPOMetrics,
    MetaRL,
    MetaRLSamples,
    gauss_newton_kl_hvp,
    maml_rl,
    maml_trpo_step,
)
from metajax._src.rl.policies import (
    Policy,
    categorical_mlp,
    check_policy,
    gaussian_mlp,
    policy_from_model,
)
from metajax._src.rl.returns import (
    Advantages,
    compute_advantages,
    discounted_returns,
    fit_linear_baseline,
    gae,
    linear_baseline,
    normalize_advantages,
)
from metajax._src.rl.rollout import Trajectories, episode_returns, rollout, sample_trajectories
from metajax._src.rl.trpo import TRPOInfo, conjugate_gradient, trpo_step

__all__ = [
    "ActionSpace",
    "AdvantageSpec",
    "Advantages",
    "CartPoleTask",
    "ESTIMATORS",
    "Environment",
    "MAMLTRPOMetrics",
    "MetaRL",
    "MetaRLSamples",
    "Policy",
    "TRPOInfo",
    "Trajectories",
    "bernoulli_bandit",
    "cartpole",
    "cartpole_task",
    "categorical_mlp",
    "check_env_task",
    "check_policy",
    "compute_advantages",
    "conjugate_gradient",
    "dice_objective",
    "discounted_returns",
    "episode_returns",
    "fit_linear_baseline",
    "gae",
    "gauss_newton_kl_hvp",
    "gaussian_mlp",
    "inner_surrogate",
    "linear_baseline",
    "magic_box",
    "maml_rl",
    "maml_trpo_step",
    "navigation2d",
    "normalize_advantages",
    "outer_surrogate",
    "policy_from_model",
    "ratio_surrogate",
    "rollout",
    "sample_trajectories",
    "support_log_weight",
    "trpo_step",
]
