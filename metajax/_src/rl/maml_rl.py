r"""MAML for reinforcement learning: the per-task meta-objective, its pieces for the learners, and MAML-TRPO.

Per task and inner step ``t`` the policy samples ``num_trajectories`` support trajectories with the key
``fold_in(key, 2 t)`` at its current parameters and takes a policy-gradient step
:math:`\theta_{t+1} = \theta_t + \alpha_t \nabla \mathcal{L}^{in}(\theta_t; S_t)` on the inner surrogate of the
chosen estimator (:mod:`metajax._src.rl.estimators`); after ``num_inner_steps`` steps it samples the query
trajectories with ``fold_in(key, 2 k - 1)`` and forms the outer surrogate. The keys are those that metajax's
stateful inner loop hands to a loss (``fold_in(key, 2 t)`` at inner step ``t``, ``fold_in(key, 2 t + 1)`` after
it), so the learners and the direct functions here draw the same trajectories.

:func:`maml_rl` returns a :class:`MetaRL` of pure functions: the stateful loss and query loss the learners call, the
direct per-task meta-loss, and the sample / replay / surrogate / KL functions MAML-TRPO is built from
(:func:`maml_trpo_step`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax._src.base import Params, check_positive_int
from metajax._src.rl.envs import Environment, check_env_task
from metajax._src.rl.estimators import (
    check_estimator,
    inner_surrogate,
    magic_box,
    outer_surrogate,
    ratio_surrogate,
    support_log_weight,
)
from metajax._src.rl.policies import Policy, check_policy
from metajax._src.rl.returns import BASELINES, Advantages, check_discount, compute_advantages, trajectory_mean
from metajax._src.rl.rollout import (
    Trajectories,
    episode_returns,
    sample_trajectories,
    trajectory_dists,
    trajectory_log_probs,
)
from metajax._src.rl.trpo import TRPOInfo, check_trpo_args, trpo_step

GRADIENTS = ("exact", "first_order")
KL_HVPS = ("gauss_newton", "forward_over_reverse")


class AdvantageSpec(NamedTuple):
    """How a batch's advantages are computed (:func:`~metajax._src.rl.returns.compute_advantages`).

    The defaults are pytorch-maml-rl's 2D-navigation settings.
    """

    gamma: float = 0.99
    gae_lambda: float = 1.0
    baseline: str = "linear"
    normalize: bool = True

    def check(self, argname: str) -> AdvantageSpec:
        try:
            check_discount("gamma", self.gamma)
            check_discount("gae_lambda", self.gae_lambda)
        except ValueError as err:
            raise ValueError(f"{argname}: {err}") from None
        if self.baseline not in BASELINES:
            raise ValueError(f"{argname}.baseline must be one of {BASELINES}, got {self.baseline!r}.")
        return self

    def __call__(self, trajectories: Trajectories):
        return compute_advantages(trajectories, self.gamma, self.gae_lambda, self.baseline, self.normalize)


class MetaRLSamples(NamedTuple):
    """The trajectories one task's meta-objective is computed from, with their advantages (constants).

    The advantages are computed once, when the trajectories are drawn: every replay of the adaptation (the
    meta-gradient, TRPO's Hessian-vector products and line search) reads them instead of refitting the baseline.

    Attributes:
      support: the support batches, leading axes ``(num_inner_steps, num_trajectories, horizon)``.
      support_advantages: their :class:`~metajax._src.rl.returns.Advantages`, same leading axes.
      query: the query batch, leading axes ``(num_query_trajectories, horizon)``.
      query_advantages: its :class:`~metajax._src.rl.returns.Advantages`.
    """

    support: Trajectories
    support_advantages: Advantages
    query: Trajectories | None = None
    query_advantages: Advantages | None = None


class MetaRL(NamedTuple):
    """MAML for RL as pure functions (built by :func:`maml_rl`). ``task`` is one task of the environment.

    Attributes:
      loss_fn: ``loss_fn(params, state, task, step, key) -> (loss, (state, aux))``, the stateful loss of metajax's
        learners: samples a support batch with ``key`` and returns minus the inner surrogate. ``state`` is ``None``
        or a scalar DiCE log-weight (:attr:`init_state`); with ``"dice"`` the loss adds the support batch's
        log-likelihood (zero in value) to it. ``step`` is unused.
      query_loss_fn: ``query_loss_fn(params, state, query, support, step, key) -> (loss, aux)``: samples the query
        batch with ``key`` on the task ``query`` (``support`` and ``step`` unused) and returns minus the outer
        surrogate, weighted by the DiCE log-weight in ``state``.
      init_state: ``init_state() -> state``, a float zero.
      sample: ``sample(params, task, key) -> MetaRLSamples``: every trajectory of one task's meta-objective,
        sampled without gradients.
      adapt: ``adapt(params, task, samples) -> (adapted_params, log_weight)``, the inner steps replayed on the
        fixed support batches of ``samples`` (differentiable; ``log_weight`` is the DiCE weight of the support, 0
        in value; the query fields of ``samples`` may be ``None``).
      objective: ``objective(params, task, samples, support_baseline=0.0) -> (loss, aux)``: minus the
        estimator's post-adaptation objective; at the parameters that drew ``samples`` its gradient is the
        meta-gradient estimate. ``support_baseline`` (``"dice"`` only) is subtracted from the query return in the
        support batches' score term; any value that does not depend on this task's samples keeps the estimate
        unbiased.
      batch_objective: ``batch_objective(params, tasks, samples) -> (loss, aux)``: the mean of ``objective`` over
        a task batch (leading task axis on ``tasks`` and ``samples``), every task's support baseline the mean
        discounted query return of the *other* tasks (independent of its own samples, so still unbiased).
      meta_loss: ``meta_loss(params, task, key) -> (loss, aux)``: ``objective`` on freshly drawn samples.
      meta_grad: ``meta_grad(params, tasks, key) -> (grads, metrics)``: the gradient of ``batch_objective`` on
        fresh samples (task ``i`` samples with ``split(key, num_tasks)[i]``), for any Optax outer optimiser;
        ``metrics`` holds the mean ``loss``, ``support_return`` and ``query_return``.
      surrogate: ``surrogate(params, task, samples) -> loss``: minus TRPO's importance-ratio surrogate on the query
        batch after replaying the adaptation (the line search's loss).
      query_dists: ``query_dists(params, task, samples)``: the adapted policy's distributions on the query batch.
      kl: ``kl(params, old_dists, task, samples) -> scalar``: mean KL from ``old_dists`` to the adapted policy.
      evaluate: ``evaluate(params, task, key, inner_lrs) -> returns`` of shape ``(len(inner_lrs) + 1,)``: the mean
        episode return before each inner step and after the last (the MAML paper's test protocol).
      support_advantages, query_advantages: the :class:`AdvantageSpec` of the support and query batches
        (callables ``trajectories -> Advantages``).
      env, policy, num_inner_steps, estimator, gradient: what it was built with.
    """

    loss_fn: Callable
    query_loss_fn: Callable
    init_state: Callable
    sample: Callable
    adapt: Callable
    objective: Callable
    meta_loss: Callable
    batch_objective: Callable
    meta_grad: Callable
    surrogate: Callable
    query_dists: Callable
    kl: Callable
    evaluate: Callable
    support_advantages: AdvantageSpec
    query_advantages: AdvantageSpec
    env: Environment
    policy: Policy
    num_inner_steps: int
    estimator: str
    gradient: str


def _inner_lrs(inner_lr: Any, num_inner_steps: int) -> tuple[float, ...]:
    lrs = tuple(inner_lr) if isinstance(inner_lr, Sequence) else (inner_lr,) * num_inner_steps
    if len(lrs) != num_inner_steps:
        raise ValueError(
            f"inner_lr must be one number or one per inner step ({num_inner_steps}), got {len(lrs)}: {inner_lr!r}."
        )
    for lr in lrs:
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr >= 0:
            raise ValueError(f"inner_lr must be finite numbers >= 0, got {inner_lr!r}.")
    return lrs


def maml_rl(
    env: Environment,
    policy: Policy,
    num_inner_steps: int = 1,
    *,
    inner_lr: float | Sequence[float] = 0.1,
    estimator: str = "dice",
    gradient: str = "exact",
    num_trajectories: int = 20,
    num_query_trajectories: int | None = None,
    horizon: int | None = None,
    advantages: AdvantageSpec = AdvantageSpec(),  # noqa: B008 - an immutable named tuple
    query_advantages: AdvantageSpec | None = None,
) -> MetaRL:
    r"""MAML for reinforcement learning (Finn et al. 2017) with a choice of meta-gradient estimator.

    The per-task meta-objective is the expected return of the adapted policy,
    :math:`F(\theta) = \mathbb{E}_{S_{0..k-1}}\,J(\theta_k)`, where every support batch :math:`S_t` is sampled from
    the policy being adapted. ``estimator="dice"`` with ``gradient="exact"`` gives an unbiased estimate of
    :math:`\nabla F`, the sampling dependence of the support batches included; ``"lvc"`` and ``"reinforce"`` are
    the biased, lower-variance comparisons of ProMP and of the MAML paper's code; ``gradient="first_order"`` puts
    ``stop_gradient`` on the inner gradients and drops the support term (FOMAML).

    Args:
      env: the :class:`~metajax._src.rl.envs.Environment`.
      policy: a :class:`~metajax._src.rl.policies.Policy` acting in ``env``'s action space.
      num_inner_steps: inner policy-gradient steps k >= 1, each on a fresh support batch.
      inner_lr: the inner step size :math:`\alpha`, or one per inner step (the MAML paper evaluates with
        :math:`\alpha, \alpha/2, \ldots`). Plain gradient steps; Meta-SGD rates or other optimisers come through
        the learners with :attr:`MetaRL.loss_fn`.
      estimator: ``"dice"`` (exact), ``"lvc"`` or ``"reinforce"`` (:mod:`metajax._src.rl.estimators`).
      gradient: ``"exact"`` or ``"first_order"``.
      num_trajectories: support trajectories per inner step (20 in the MAML paper).
      num_query_trajectories: query trajectories (default: ``num_trajectories``).
      horizon: the episode length (default: ``env.horizon``).
      advantages: the support batches' :class:`AdvantageSpec` (baseline, GAE, normalisation): part of the inner
        update rule, so any choice keeps ``"dice"`` exact.
      query_advantages: the query batch's (default: ``advantages``). With ``"dice"`` only ``gamma`` and the
        baseline are used (the Mao et al. baseline term); the estimate stays unbiased when the baseline does not
        depend on the trajectory it is applied to (``baseline="none"``; the linear baseline refitted on the query
        batch is the references' practice and costs a small bias).

    Returns:
      A :class:`MetaRL`.

    Raises:
      ValueError: before any compute, for a policy that does not act in the environment's action space, a horizon
        or batch size below 1, an unknown estimator or gradient, or ``inner_lr`` of the wrong length.

    >>> from metajax._src.rl.envs import bernoulli_bandit
    >>> from metajax._src.rl.policies import categorical_mlp
    >>> env, policy = bernoulli_bandit(3), categorical_mlp(3, ())
    >>> meta = maml_rl(env, policy, inner_lr=0.5, num_trajectories=4)
    >>> params = policy.init(jax.random.PRNGKey(0), env.obs_dim)
    >>> task = jnp.array([0.1, 0.5, 0.9])
    >>> meta_grad = jax.jit(jax.grad(meta.meta_loss, has_aux=True))  # one task's meta-gradient estimate
    >>> grads, aux = jax.eval_shape(meta_grad, params, task, jax.random.PRNGKey(1))
    >>> grads["head"]["b"].shape, sorted(aux)
    ((3,), ['query_return', 'support_return'])

    References:
      Finn, Abbeel, Levine (2017). Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML.
      Foerster et al. (2018). DiCE: The Infinitely Differentiable Monte Carlo Estimator. ICML.
      Rothfuss et al. (2019). ProMP: Proximal Meta-Policy Search. ICLR.
    """
    num_inner_steps = check_positive_int("num_inner_steps", num_inner_steps)
    lrs = _inner_lrs(inner_lr, num_inner_steps)
    estimator = check_estimator(estimator)
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}.")
    num_trajectories = check_positive_int("num_trajectories", num_trajectories)
    num_query = num_trajectories if num_query_trajectories is None else num_query_trajectories
    num_query = check_positive_int("num_query_trajectories", num_query)
    horizon = check_positive_int("horizon", env.horizon if horizon is None else horizon)
    check_policy(policy, env)
    support_adv = advantages.check("advantages")
    query_adv = support_adv if query_advantages is None else query_advantages.check("query_advantages")
    first_order = gradient == "first_order"

    def check_call(params, task):
        check_env_task(env, task)
        check_policy(policy, env, params, "params (the policy's)")

    def draw(params, task, key, num):
        return sample_trajectories(env, policy, params, task, key, num, horizon)

    def inner_grad(params, traj, adv):
        """The inner surrogate's gradient on a fixed batch, and the batch's DiCE log-weight."""

        def objective(p):
            log_probs = trajectory_log_probs(policy, p, traj)
            return inner_surrogate(estimator, log_probs, adv.advantages, traj.masks), log_probs

        grads, log_probs = jax.grad(objective, has_aux=True)(params)
        if first_order:
            return jax.lax.stop_gradient(grads), jnp.zeros((), log_probs.dtype)
        return grads, support_log_weight(estimator, log_probs, traj.masks)

    def step_params(params, grads, lr):
        return jax.tree_util.tree_map(lambda p, g: p + jnp.asarray(lr, p.dtype) * g, params, grads)

    def query_objective(params, traj, adv, log_weight):
        log_probs = trajectory_log_probs(policy, params, traj)
        value = outer_surrogate(estimator, log_probs, traj.rewards, traj.masks, adv, query_adv.gamma, log_weight)
        return value

    # -- the learners' stateful losses ------------------------------------------------------------------------

    def init_state():
        return jnp.zeros((), jnp.result_type(float))

    def loss_fn(params, state, task, step, key):
        del step
        check_call(params, task)
        traj = draw(params, task, key, num_trajectories)
        adv = support_adv(traj)
        log_probs = trajectory_log_probs(policy, params, traj)
        loss = -inner_surrogate(estimator, log_probs, adv.advantages, traj.masks)
        new_state = state
        if state is not None and not first_order:
            new_state = state + support_log_weight(estimator, log_probs, traj.masks).astype(jnp.result_type(state))
        return loss, (new_state, {"return": jnp.mean(episode_returns(traj))})

    def query_loss_fn(params, state, query, support, step, key):
        del support, step
        check_call(params, query)
        traj = draw(params, query, key, num_query)
        weight = 0.0 if state is None else state
        value = query_objective(params, traj, query_adv(traj), weight)
        return -value, {"return": jnp.mean(episode_returns(traj))}

    # -- the direct functions -----------------------------------------------------------------------------------

    def sample(params, task, key):
        check_call(params, task)
        params = jax.lax.stop_gradient(params)

        def body(p, x):
            t, lr = x
            traj = draw(p, task, jax.random.fold_in(key, 2 * t), num_trajectories)
            adv = support_adv(traj)
            grads, _ = inner_grad(p, traj, adv)
            return step_params(p, grads, lr), (traj, adv)

        adapted, (support, adv) = jax.lax.scan(body, params, (jnp.arange(num_inner_steps), jnp.asarray(lrs)))
        query = draw(adapted, task, jax.random.fold_in(key, 2 * num_inner_steps - 1), num_query)
        return MetaRLSamples(support, adv, query, query_adv(query))

    def adapt(params, task, samples):
        del task

        def body(carry, x):
            p, weight = carry
            traj, adv, lr = x
            grads, w = inner_grad(p, traj, adv)
            return (step_params(p, grads, lr), weight + w.astype(weight.dtype)), None

        weight = jnp.zeros((), jnp.result_type(*jax.tree_util.tree_leaves(params)))
        xs = (samples.support, samples.support_advantages, jnp.asarray(lrs))
        (adapted, weight), _ = jax.lax.scan(body, (params, weight), xs)
        return adapted, weight

    def objective(params, task, samples, support_baseline=0.0):
        check_call(params, task)
        adapted, weight = adapt(params, task, samples)
        value = query_objective(adapted, samples.query, samples.query_advantages, weight)
        # The support batches' baseline term (Mao et al. 2019): zero in value and in expectation, it subtracts
        # score(S) * b from the gradient; b must not depend on this task's samples.
        value = value + (1.0 - magic_box(weight)) * jax.lax.stop_gradient(support_baseline)
        aux = {
            "support_return": jnp.mean(episode_returns(_first(samples.support))),
            "query_return": jnp.mean(episode_returns(samples.query)),
        }
        return -value, aux

    def meta_loss(params, task, key):
        return objective(params, task, sample(params, task, key))

    def batch_objective(params, tasks, samples):
        """Mean of ``objective`` over a task batch, each task's support baseline from the other tasks."""
        baselines = leave_one_out_mean(jnp.mean(samples.query_advantages.returns[..., 0], axis=-1))
        losses, aux = jax.vmap(objective, (None, 0, 0, 0))(params, tasks, samples, baselines)
        return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, aux)

    def meta_grad(params, tasks, key):
        num_tasks = check_env_task(env, tasks, "tasks", batched=True)
        samples = jax.vmap(sample, (None, 0, 0))(params, tasks, jax.random.split(key, num_tasks))
        (loss, aux), grads = jax.value_and_grad(batch_objective, has_aux=True)(params, tasks, samples)
        return grads, {"loss": loss, **aux}

    def surrogate(params, task, samples):
        adapted, _ = adapt(params, task, samples)
        query = samples.query
        log_probs = trajectory_log_probs(policy, adapted, query)
        return -ratio_surrogate(log_probs, query.log_probs, samples.query_advantages.advantages, query.masks)

    def query_dists(params, task, samples):
        adapted, _ = adapt(params, task, samples)
        return jax.lax.stop_gradient(trajectory_dists(policy, adapted, samples.query))

    def kl(params, old_dists, task, samples):
        adapted, _ = adapt(params, task, samples)
        new_dists = trajectory_dists(policy, adapted, samples.query)
        per_step = policy.kl
        for _ in range(samples.query.masks.ndim):
            per_step = jax.vmap(per_step)
        kls = per_step(old_dists, new_dists)
        return jnp.mean(trajectory_mean(kls, samples.query.masks))

    def evaluate(params, task, key, inner_lrs=lrs):
        check_call(params, task)
        params = jax.lax.stop_gradient(params)

        def body(p, x):
            t, lr = x
            traj = draw(p, task, jax.random.fold_in(key, 2 * t), num_trajectories)
            grads, _ = inner_grad(p, traj, support_adv(traj))
            return step_params(p, grads, lr), jnp.mean(episode_returns(traj))

        steps = len(inner_lrs)
        adapted, returns = jax.lax.scan(
            body, params, (jnp.arange(steps), jnp.asarray(inner_lrs, jnp.result_type(float)))
        )
        last = draw(adapted, task, jax.random.fold_in(key, 2 * steps), num_trajectories)
        return jnp.concatenate([returns, jnp.mean(episode_returns(last))[None]])

    return MetaRL(
        loss_fn=loss_fn,
        query_loss_fn=query_loss_fn,
        init_state=init_state,
        sample=sample,
        adapt=adapt,
        objective=objective,
        meta_loss=meta_loss,
        batch_objective=batch_objective,
        meta_grad=meta_grad,
        surrogate=surrogate,
        query_dists=query_dists,
        kl=kl,
        evaluate=evaluate,
        support_advantages=support_adv,
        query_advantages=query_adv,
        env=env,
        policy=policy,
        num_inner_steps=num_inner_steps,
        estimator=estimator,
        gradient=gradient,
    )


def leave_one_out_mean(values: jax.Array) -> jax.Array:
    """For each entry, the mean of the *other* entries (0 for a single entry): a baseline independent of its own."""
    n = values.shape[0]
    if n == 1:
        return jnp.zeros_like(values)
    return (jnp.sum(values) - values) / (n - 1)


def _first(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def gauss_newton_kl_hvp(meta: MetaRL, params: Params, tasks: Any, samples: MetaRLSamples) -> tuple[Any, Callable]:
    r"""The adapted policies' query distributions and the Hessian-vector product of MAML-TRPO's KL, factored.

    The trust region's KL is :math:`\bar K(\theta) = \frac1n \sum_i K_i(d_i(\theta'_i(\theta)))` with
    :math:`\theta'_i` task ``i``'s adaptation (replayed on its support batches), :math:`d_i` the adapted policy's
    distributions on its query batch and :math:`K_i` their KL from the distributions at the current parameters.
    At the current parameters every :math:`K_i` is at its minimum (zero gradient), so the second-derivative terms of
    the chain rule vanish and the Hessian is exactly the Gauss-Newton matrix
    :math:`\frac1n \sum_i J_i^\top G_i^\top M_i G_i J_i`, with :math:`J_i` the adaptation's Jacobian, :math:`G_i`
    the policy's Jacobian on the query batch and :math:`M_i` the KL's Hessian in the distribution parameters
    (block-diagonal per time step). The product applies :math:`J, G` (``jax.linearize``: the primal passes are
    computed once, here) and their transposes (``jax.linear_transpose``): a second-order pass through the
    adaptation per product instead of the third-order one of forward-over-reverse on :math:`\bar K`, with the same
    matrix up to rounding (``tests/test_rl_trpo.py`` compares the two in float64).

    Returns:
      ``(old_dists, hvp)``: the query distributions at ``params`` (stacked over tasks, without gradient) and
      ``hvp(v) -> H v`` for a pytree ``v`` like ``params``.
    """

    def adapt_all(p):
        return jax.vmap(meta.adapt, (None, 0, 0))(p, tasks, samples)[0]

    def dists_all(adapted):
        return jax.vmap(lambda a, s: trajectory_dists(meta.policy, a, s))(adapted, samples.query)

    adapted, jac = jax.linearize(adapt_all, params)
    jac_t = jax.linear_transpose(jac, params)
    dists, dists_jac = jax.linearize(dists_all, adapted)
    dists_jac_t = jax.linear_transpose(dists_jac, adapted)
    old = jax.lax.stop_gradient(dists)
    masks = samples.query.masks

    def mean_kl(new):
        per_step = meta.policy.kl
        for _ in range(masks.ndim):
            per_step = jax.vmap(per_step)
        return jnp.mean(jax.vmap(lambda k, m: jnp.mean(trajectory_mean(k, m)))(per_step(old, new), masks))

    kl_grad = jax.grad(mean_kl)

    def hvp(v):
        tangent = dists_jac(jac(v))
        (cotangent,) = dists_jac_t(jax.jvp(kl_grad, (dists,), (tangent,))[1])
        (out,) = jac_t(cotangent)
        return out

    return old, hvp


class MAMLTRPOMetrics(NamedTuple):
    """What :func:`maml_trpo_step` reports: the TRPO step's :class:`~metajax._src.rl.trpo.TRPOInfo` and returns."""

    trpo: TRPOInfo
    support_return: jax.Array
    query_return: jax.Array


def maml_trpo_step(
    meta: MetaRL,
    params: Params,
    tasks: Any,
    key: jax.Array,
    *,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    ls_max_steps: int = 15,
    ls_backtrack_ratio: float = 0.8,
    kl_hvp: str = "gauss_newton",
) -> tuple[Params, MAMLTRPOMetrics]:
    """One MAML-TRPO meta-iteration over a batch of tasks, as one jit-able function.

    Samples every task's trajectories (task ``i`` with ``split(key, num_tasks)[i]``), takes the meta-gradient of
    ``meta.batch_objective`` (the estimator's, averaged over the tasks), and hands it to
    :func:`~metajax._src.rl.trpo.trpo_step` with the line-search loss ``meta.surrogate`` and the KL of the adapted
    policies on the query batches, both recomputed by replaying the adaptation on the same support batches (as
    pytorch-maml-rl's ``MAMLTRPO.step``).

    Args:
      meta: a :class:`MetaRL` from :func:`maml_rl`.
      params: the policy's meta-parameters.
      tasks: a batch of tasks (leading task axis).
      key: this meta-iteration's PRNG key.
      max_kl, cg_iters, cg_damping, ls_max_steps, ls_backtrack_ratio: as in
        :func:`~metajax._src.rl.trpo.trpo_step` (pytorch-maml-rl's defaults).
      kl_hvp: how conjugate gradient applies the KL's Hessian: ``"gauss_newton"`` (default,
        :func:`gauss_newton_kl_hvp`) or ``"forward_over_reverse"`` (``jax.jvp`` of ``jax.grad`` of the KL, as the
        references' double backward). The same matrix; the first costs less.

    Returns:
      ``(new_params, MAMLTRPOMetrics)``.

    References:
      Finn, Abbeel, Levine (2017). Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML.
      Schulman et al. (2015). Trust Region Policy Optimization. ICML.
    """
    check_trpo_args(max_kl, cg_iters, cg_damping, ls_max_steps, ls_backtrack_ratio)
    if kl_hvp not in KL_HVPS:
        raise ValueError(f"kl_hvp must be one of {KL_HVPS}, got {kl_hvp!r}.")
    num_tasks = check_env_task(meta.env, tasks, "tasks", batched=True)
    keys = jax.random.split(key, num_tasks)
    samples = jax.vmap(meta.sample, (None, 0, 0))(params, tasks, keys)
    grads, aux = jax.grad(meta.batch_objective, has_aux=True)(params, tasks, samples)
    if kl_hvp == "gauss_newton":
        old_dists, hvp = gauss_newton_kl_hvp(meta, params, tasks, samples)
    else:
        old_dists, hvp = jax.vmap(meta.query_dists, (None, 0, 0))(params, tasks, samples), None

    def loss_fn(p):
        return jnp.mean(jax.vmap(meta.surrogate, (None, 0, 0))(p, tasks, samples))

    def kl_fn(p):
        return jnp.mean(jax.vmap(meta.kl, (None, 0, 0, 0))(p, old_dists, tasks, samples))

    new_params, info = trpo_step(
        params,
        loss_fn,
        kl_fn,
        grad=grads,
        kl_hvp=hvp,
        max_kl=max_kl,
        cg_iters=cg_iters,
        cg_damping=cg_damping,
        ls_max_steps=ls_max_steps,
        ls_backtrack_ratio=ls_backtrack_ratio,
    )
    metrics = MAMLTRPOMetrics(info, aux["support_return"], aux["query_return"])
    return new_params, metrics
