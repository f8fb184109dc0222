"""Meta-RL building blocks: environments, policies, rollouts, returns and input checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import rl


def small_nav(horizon=5):
    env = rl.navigation2d(horizon=horizon)
    policy = rl.gaussian_mlp(2, (4,))
    return env, policy, policy.init(jax.random.PRNGKey(0), env.obs_dim)


# -- environments ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("actions, velocity", [("normalized", [0.1, -0.05]), ("clipped", [0.1, -0.1])])
def test_navigation_action_conventions(actions, velocity):
    env = rl.navigation2d(actions)
    goal = jnp.array([0.3, -0.4])
    state, obs = env.reset(jax.random.PRNGKey(0), goal)
    np.testing.assert_allclose(obs, [0.0, 0.0])
    # normalized: 0.1 * clip(a, -1, 1) (rllab's normalize); clipped: clip(a, -0.1, 0.1) (pytorch-maml-rl).
    state, obs, reward, done = env.step(state, jnp.array([2.0, -0.5]), goal)
    np.testing.assert_allclose(obs, velocity, rtol=1e-6)
    np.testing.assert_allclose(reward, -np.linalg.norm(np.array(velocity) - np.array([0.3, -0.4])), rtol=1e-5)
    assert not bool(done)
    assert env.action_space == rl.ActionSpace(
        "continuous", 2, *((-1.0, 1.0) if actions == "normalized" else (-0.1, 0.1))
    )


def test_navigation_done_within_tolerance_and_task_distribution():
    env = rl.navigation2d("clipped")
    goal = jnp.array([0.095, 0.005])
    state, _ = env.reset(jax.random.PRNGKey(0), goal)
    assert bool(env.step(state, jnp.array([0.1, 0.0]), goal)[3])  # both coordinates within 0.01
    assert not bool(env.step(state, jnp.array([0.1, 0.1]), goal)[3])
    tasks = env.sample_tasks(jax.random.PRNGKey(1), 100)
    assert tasks.shape == (100, 2) and float(tasks.min()) >= -0.5 and float(tasks.max()) <= 0.5


def test_bandit_rewards_have_the_task_means():
    env = rl.bernoulli_bandit(3)
    task = jnp.array([0.1, 0.5, 0.9])

    def pull(key, arm):
        state, _ = env.reset(key, task)
        _, obs, reward, done = env.step(state, arm, task)
        return reward, done, obs

    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    pulls = jax.jit(jax.vmap(pull, (0, None)))
    for arm in range(3):
        rewards, done, obs = pulls(keys, jnp.int32(arm))
        assert bool(jnp.all(done)) and obs.shape == (4000, 1)
        assert abs(float(rewards.mean()) - float(task[arm])) < 0.03


def _gym_cartpole_step(s, action, masscart=1.0, masspole=0.1, length=0.5):
    """The classic equations (gym's CartPole-v1, Euler integration), in NumPy float64."""
    gravity, force_mag, tau = 9.8, 10.0, 0.02
    total_mass, polemass_length = masspole + masscart, masspole * length
    x, x_dot, theta, theta_dot = s
    force = force_mag if action == 1 else -force_mag
    costheta, sintheta = math.cos(theta), math.sin(theta)
    temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
    thetaacc = (gravity * sintheta - costheta * temp) / (length * (4.0 / 3.0 - masspole * costheta**2 / total_mass))
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    x, x_dot = x + tau * x_dot, x_dot + tau * xacc
    theta, theta_dot = theta + tau * theta_dot, theta_dot + tau * thetaacc
    done = x < -2.4 or x > 2.4 or theta < -12 * 2 * math.pi / 360 or theta > 12 * 2 * math.pi / 360
    return np.array([x, x_dot, theta, theta_dot]), done


@pytest.mark.parametrize("physics", [{}, {"masscart": 2.0, "masspole": 0.3, "length": 0.8}])
def test_cartpole_matches_the_classic_dynamics(physics):
    with jax.enable_x64(True):
        env = rl.cartpole()
        task = rl.cartpole_task(**physics)
        state, obs = jax.jit(env.reset)(jax.random.PRNGKey(3), task)
        ref = np.asarray(obs)
        assert np.all(np.abs(ref) <= 0.05)
        step = jax.jit(env.step)
        for t, action in enumerate([1, 1, 0, 1, 0, 0, 0, 1]):
            state, obs, reward, done = step(state, jnp.int32(action), task)
            ref, ref_done = _gym_cartpole_step(ref, action, **physics)
            np.testing.assert_allclose(np.asarray(obs), ref, rtol=1e-12, atol=1e-14, err_msg=f"step {t}")
            assert float(reward) == 1.0 and bool(done) == ref_done
        tasks = env.sample_tasks(jax.random.PRNGKey(0), 5)
        assert tasks.masscart.shape == (5,) and float(tasks.length.min()) >= 0.25


def test_cartpole_terminates_past_the_angle_limit():
    env = rl.cartpole()
    state = jnp.array([0.0, 0.0, 0.2, 0.5])
    assert bool(env.step(state, jnp.int32(0), rl.cartpole_task())[3])


# -- policies ---------------------------------------------------------------------------------------------------------


def test_gaussian_policy_log_prob_and_kl():
    policy = rl.gaussian_mlp(2, (3,), init_std=0.5)
    obs, action = jnp.arange(4.0) / 4, jnp.array([0.3, -0.2])

    @jax.jit
    def values(key):
        params = policy.init(key, 4)
        dist = policy.apply(params, obs)
        other = (dist[0] + 0.1, dist[1] + 0.2)
        return dist, policy.log_prob(params, obs, action), policy.kl(dist, other), policy.kl(dist, dist)

    (mean, log_std), log_prob, kl, kl_self = values(jax.random.PRNGKey(0))
    np.testing.assert_allclose(log_std, math.log(0.5) * np.ones(2), rtol=1e-6)
    terms = [
        -0.5 * ((a - m) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
        for a, m in zip(action, mean, strict=True)
    ]
    np.testing.assert_allclose(log_prob, sum(terms), rtol=1e-5)
    # KL of diagonal Gaussians, per dimension: log(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2
    s1, s2 = 0.5, 0.5 * math.exp(0.2)
    np.testing.assert_allclose(kl, 2 * (math.log(s2 / s1) + (s1**2 + 0.01) / (2 * s2**2) - 0.5), rtol=1e-5)
    assert float(kl_self) == 0.0


def test_categorical_policy_samples_its_distribution():
    policy = rl.categorical_mlp(3, ())
    params = {"head": {"w": jnp.zeros((1, 3)), "b": jnp.log(jnp.array([0.2, 0.3, 0.5]))}}
    keys = jax.random.split(jax.random.PRNGKey(0), 5000)

    @jax.jit
    def draw(keys):
        actions = jax.vmap(lambda k: policy.sample(params, k, jnp.zeros(1)))(keys)
        return actions, policy.log_prob(params, jnp.zeros(1), jnp.int32(2))

    actions, log_prob = draw(keys)
    np.testing.assert_allclose(np.bincount(np.asarray(actions), minlength=3) / 5000, [0.2, 0.3, 0.5], atol=0.03)
    np.testing.assert_allclose(log_prob, math.log(0.5), rtol=1e-5)


def test_policy_from_model():
    from metajax.models import mlp

    policy = rl.policy_from_model(mlp(2, (4,), 2), "gaussian", 2)
    params = jax.eval_shape(lambda k: policy.init(k, 2), jax.random.PRNGKey(0))
    assert params["log_std"].shape == (2,)
    rl.check_policy(policy, rl.navigation2d(), params)  # on shapes
    with pytest.raises(ValueError, match="got a continuous policy with dim 2"):
        rl.check_policy(policy, rl.bernoulli_bandit(2), params)
    with pytest.raises(ValueError, match="obs_dim must match the model's input shape"):
        policy.init(jax.random.PRNGKey(0), 3)


# -- rollouts ---------------------------------------------------------------------------------------------------------


def test_rollouts_vmapped_over_tasks_equal_a_loop():
    env, policy, params = small_nav()
    tasks = env.sample_tasks(jax.random.PRNGKey(1), 3)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    one = jax.jit(lambda t, k: rl.sample_trajectories(env, policy, params, t, k, 2))
    batched = jax.jit(jax.vmap(lambda t, k: rl.sample_trajectories(env, policy, params, t, k, 2)))(tasks, keys)
    assert batched.observations.shape == (3, 2, 5, 2) and batched.actions.shape == (3, 2, 5, 2)
    for i in range(3):
        looped = one(tasks[i], keys[i])
        for a, b in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(looped), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)
    # The recorded log-probabilities are the sampling policy's, and rewards are minus the distance to the goal.
    traj = jax.tree_util.tree_map(np.asarray, one(tasks[0], keys[0]))
    p = jax.tree_util.tree_map(np.asarray, params)
    mean = np.tanh(traj.observations @ p["hidden_0"]["w"] + p["hidden_0"]["b"]) @ p["head"]["w"] + p["head"]["b"]
    log_std = p["log_std"]
    lp = np.sum(-0.5 * ((traj.actions - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)
    np.testing.assert_allclose(traj.log_probs, lp, rtol=1e-4, atol=1e-5)
    positions = np.cumsum(np.clip(0.1 * traj.actions, -0.1, 0.1), axis=1)
    goal = np.asarray(tasks[0])
    np.testing.assert_allclose(traj.rewards, -np.linalg.norm(positions - goal, axis=-1), rtol=1e-5, atol=1e-6)


def _counter_env(stop_at=3):
    """A deterministic test environment: the observation counts the steps; the episode ends at ``stop_at``."""

    def reset(key, task):
        del key, task
        return jnp.zeros(()), jnp.zeros((1,))

    def step(state, action, task):
        del action, task
        state = state + 1
        return state, state[None], jnp.ones(()), state >= stop_at

    return rl.Environment(
        reset,
        step,
        lambda k, n: jnp.zeros((n, 1)),
        1,
        rl.ActionSpace("continuous", 1),
        6,
        jax.ShapeDtypeStruct((1,), jnp.float32),
        "counter",
    )


def test_done_masks_and_frozen_state():
    env = _counter_env()
    policy = rl.gaussian_mlp(1, ())
    params = policy.init(jax.random.PRNGKey(0), 1)
    traj = rl.rollout(env, policy, params, jnp.zeros(1), jax.random.PRNGKey(1), 6)
    np.testing.assert_array_equal(traj.masks, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(traj.rewards, [1, 1, 1, 0, 0, 0])
    # The observation each action was taken at; after the end the state stays frozen at the final observation.
    np.testing.assert_array_equal(traj.observations[:, 0], [0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(rl.episode_returns(traj), 3.0)


# -- returns ----------------------------------------------------------------------------------------------------------


def test_discounted_returns_and_gae_by_hand():
    rewards, values = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 1.0, 1.5])
    np.testing.assert_allclose(rl.discounted_returns(rewards, jnp.ones(3), 0.9), [1 + 0.9 * 4.7, 2 + 0.9 * 3, 3])
    # delta = (1.4, 2.35, 1.5); A_t = delta_t + 0.72 A_{t+1}
    np.testing.assert_allclose(rl.gae(rewards, values, jnp.ones(3), 0.9, 0.8), [3.8696, 3.43, 1.5], rtol=1e-6)
    # The last step masked out: its reward and value count as 0.
    np.testing.assert_allclose(rl.gae(rewards, values, jnp.array([1.0, 1.0, 0.0]), 0.9, 0.8), [2.12, 1.0, 0.0])
    # lambda = 1: reward-to-go minus the baseline.
    batch = jnp.stack([rewards, rewards[::-1]])
    np.testing.assert_allclose(
        rl.gae(batch, jnp.stack([values, values]), jnp.ones((2, 3)), 0.9, 1.0),
        rl.discounted_returns(batch, jnp.ones((2, 3)), 0.9) - values[None],
        rtol=1e-6,
    )


def test_linear_baseline_recovers_an_exactly_linear_return():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4, 100, 2))
    masks = np.ones((4, 100))
    masks[1, 50:] = masks[3, 20:] = 0.0
    t = np.broadcast_to(np.arange(100) / 100.0, (4, 100))
    target = (2.0 * obs[..., 0] - 0.5 * obs[..., 1] ** 2 + 3.0 * t - 4.0 * t**3 + 1.0) * masks
    with jax.enable_x64(True):
        fit = jax.jit(lambda o, y, m: (rl.linear_baseline(o, y, m), rl.fit_linear_baseline(o, y, m)))
        values, coeffs = (np.asarray(a) for a in fit(obs, target, masks))
    # The ridge term (1e-5, as in the references) is the only difference.
    np.testing.assert_allclose(values * masks, target, atol=1e-4)
    assert np.abs(values * (1 - masks)).max() == 0.0
    np.testing.assert_allclose(coeffs, [2, 0, 0, -0.5, 3, 0, -4, 1], atol=1e-3)


def test_advantages_are_normalized_over_valid_steps():
    traj = rl.Trajectories(
        jnp.zeros((2, 3, 1)),
        jnp.zeros((2, 3, 1)),
        jnp.array([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]]),
        jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]),
        jnp.zeros((2, 3)),
    )
    adv = rl.compute_advantages(traj, gamma=1.0, baseline="none", normalize=True)
    assert float(jnp.abs(adv.advantages[1, 1:]).max()) == 0.0
    # pytorch-maml-rl's weighting: mean of the per-trajectory means is 0, and so on for the variance.
    per_traj = jnp.sum(adv.advantages * traj.masks, -1) / jnp.sum(traj.masks, -1)
    np.testing.assert_allclose(jnp.mean(per_traj), 0.0, atol=1e-6)


# -- bad input --------------------------------------------------------------------------------------------------------


def test_clear_errors_before_compute():
    env, policy, params = small_nav()
    key = jax.random.PRNGKey(0)
    with pytest.raises(
        ValueError, match=r"task must be one navigation2d-normalized task of shapes \[\(2,\)\], got \[\(3,\)\]"
    ):
        rl.sample_trajectories(env, policy, params, jnp.zeros(3), key, 2)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got 0"):
        rl.sample_trajectories(env, policy, params, jnp.zeros(2), key, 2, horizon=0)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got 0"):
        rl.maml_rl(env, policy, horizon=0)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got 0"):
        rl.navigation2d(horizon=0)
    with pytest.raises(
        ValueError,
        match="policy must act in bernoulli_bandit-5's action space: discrete with dim 5; "
        "got a discrete policy with dim 3",
    ):
        rl.maml_rl(rl.bernoulli_bandit(5), rl.categorical_mlp(3))
    with pytest.raises(ValueError, match="got a discrete policy with dim 2"):
        rl.maml_rl(env, rl.categorical_mlp(2))
    # A policy that claims the right space but whose network outputs the wrong number of entries.
    wrong = rl.gaussian_mlp(3, (4,))._replace(action_space=rl.ActionSpace("continuous", 2))
    with pytest.raises(ValueError, match="output must have 2 entries per observation"):
        rl.sample_trajectories(env, wrong, wrong.init(key, 2), jnp.zeros(2), key, 2)
    with pytest.raises(ValueError, match="tasks must be a batch of navigation2d-normalized tasks"):
        rl.check_env_task(env, jnp.zeros(2), "tasks", batched=True)
    with pytest.raises(ValueError, match="estimator must be one of"):
        rl.maml_rl(env, policy, estimator="dicey")
    with pytest.raises(ValueError, match="gradient must be one of"):
        rl.maml_rl(env, policy, gradient="implicit")
    with pytest.raises(ValueError, match=r"inner_lr must be one number or one per inner step \(2\), got 3"):
        rl.maml_rl(env, policy, 2, inner_lr=(0.1, 0.05, 0.01))
    with pytest.raises(ValueError, match="gae_lambda must be a number in"):
        rl.maml_rl(env, policy, advantages=rl.AdvantageSpec(gae_lambda=1.5))
    with pytest.raises(ValueError, match="actions must be one of"):
        rl.navigation2d("scaled")
    meta = rl.maml_rl(env, policy, num_trajectories=2)
    with pytest.raises(ValueError, match=r"task must be one navigation2d-normalized task"):
        meta.meta_loss(params, jnp.zeros((4, 2)), key)
