"""Stochastic policies as pure functions of a parameter pytree.

A :class:`Policy` maps one observation to a distribution over actions. The functions act on a single observation;
rollouts and surrogates ``vmap`` them over time steps, trajectories and tasks. Built in: :func:`gaussian_mlp`
(continuous actions, a state-independent learned log standard deviation) and :func:`categorical_mlp` (discrete
actions), the policies of the MAML paper's code and of pytorch-maml-rl. :func:`policy_from_model` turns any
metajax ``Model`` (a Flax module made pure at the edge with ``metajax.models.from_linen`` or ``from_nnx``) into a
policy; this module itself does not import Flax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax._src.base import Params, check_positive_int
from metajax._src.rl.envs import ACTION_KINDS, ActionSpace, Environment

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class Policy(NamedTuple):
    """A stochastic policy as pure functions.

    Attributes:
      init: ``init(key, obs_dim) -> params``.
      apply: ``apply(params, obs) -> dist``, the distribution's parameters for one observation of shape
        ``(obs_dim,)``: ``(mean, log_std)`` for a Gaussian, the logits for a categorical policy.
      log_prob: ``log_prob(params, obs, action) -> scalar``, the log-density of one action.
      sample: ``sample(params, key, obs) -> action``: an int32 scalar (discrete) or a ``(dim,)`` vector.
      kl: ``kl(dist_p, dist_q) -> scalar``, :math:`KL(p \\| q)` between two outputs of ``apply``.
      action_space: the :class:`~metajax._src.rl.envs.ActionSpace` the policy acts in (kind and dim).
      name: a short description.
    """

    init: Callable[[jax.Array, int], Params]
    apply: Callable[[Params, jax.Array], Any]
    log_prob: Callable[[Params, jax.Array, jax.Array], jax.Array]
    sample: Callable[[Params, jax.Array, jax.Array], jax.Array]
    kl: Callable[[Any, Any], jax.Array]
    action_space: ActionSpace
    name: str


def _activation(activation: str | Callable) -> Callable:
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)} or a callable, got {activation!r}.")
    return ACTIVATIONS[activation]


def _check_sizes(hidden_sizes: Sequence[int]) -> tuple[int, ...]:
    if isinstance(hidden_sizes, int) or not all(isinstance(h, int) and h >= 1 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes must be a sequence of integers >= 1, got {hidden_sizes!r}.")
    return tuple(hidden_sizes)


def mlp_init(key: jax.Array, sizes: Sequence[int]) -> dict[str, dict[str, jax.Array]]:
    """Parameters of an MLP with layer sizes ``sizes``: Glorot-uniform weights and zero biases (as pytorch-maml-rl).

    The layers are named ``hidden_0 .. hidden_{n-1}`` and ``head`` (the output layer), so ANIL-style selectors can
    pick the head by name.
    """
    params = {}
    names = [f"hidden_{i}" for i in range(len(sizes) - 2)] + ["head"]
    for i, (name, fan_in, fan_out) in enumerate(zip(names, sizes[:-1], sizes[1:], strict=True)):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = jax.random.uniform(jax.random.fold_in(key, i), (fan_in, fan_out), jnp.result_type(float), -limit, limit)
        params[name] = {"w": w, "b": jnp.zeros((fan_out,), w.dtype)}
    return params


def mlp_apply(layers: dict[str, dict[str, jax.Array]], x: jax.Array, activation: Callable) -> jax.Array:
    """The MLP of :func:`mlp_init` on one input vector ``x``."""
    hidden = sorted((k for k in layers if k.startswith("hidden_")), key=lambda k: int(k.split("_")[1]))
    for name in hidden:
        x = activation(x @ layers[name]["w"] + layers[name]["b"])
    return x @ layers["head"]["w"] + layers["head"]["b"]


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """Log-density of a diagonal Gaussian at ``action`` (summed over the action dimensions)."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * math.log(2 * math.pi))


def gaussian_kl(p: tuple[jax.Array, jax.Array], q: tuple[jax.Array, jax.Array]) -> jax.Array:
    """:math:`KL(p \\| q)` of two diagonal Gaussians given as ``(mean, log_std)``."""
    (mp, lp), (mq, lq) = p, q
    return jnp.sum(lq - lp + (jnp.exp(2 * lp) + jnp.square(mp - mq)) / (2 * jnp.exp(2 * lq)) - 0.5)


def categorical_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    """:math:`KL(p \\| q)` of two categorical distributions given as logits."""
    lp, lq = jax.nn.log_softmax(p), jax.nn.log_softmax(q)
    return jnp.sum(jnp.exp(lp) * (lp - lq))


def _gaussian(apply_mean: Callable, init: Callable, action_dim: int, min_std: float, name: str) -> Policy:
    min_log_std = math.log(min_std)

    def apply(params, obs):
        return apply_mean(params, obs), jnp.maximum(params["log_std"], min_log_std)

    def log_prob(params, obs, action):
        mean, log_std = apply(params, obs)
        return gaussian_log_prob(mean, log_std, action)

    def sample(params, key, obs):
        mean, log_std = apply(params, obs)
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)

    return Policy(init, apply, log_prob, sample, gaussian_kl, ActionSpace("continuous", action_dim), name)


def _categorical(apply_logits: Callable, init: Callable, num_actions: int, name: str) -> Policy:
    def log_prob(params, obs, action):
        return jax.nn.log_softmax(apply_logits(params, obs))[action]

    def sample(params, key, obs):
        return jax.random.categorical(key, apply_logits(params, obs)).astype(jnp.int32)

    return Policy(init, apply_logits, log_prob, sample, categorical_kl, ActionSpace("discrete", num_actions), name)


def gaussian_mlp(
    action_dim: int,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str | Callable = "tanh",
    init_std: float = 1.0,
    min_std: float = 1e-6,
) -> Policy:
    """A Gaussian policy: an MLP gives the mean, a learned state-independent vector the log standard deviation.

    Parameters: ``{"hidden_0": {"w", "b"}, ..., "head": {"w", "b"}, "log_std": (action_dim,)}``; the standard
    deviation is ``exp(max(log_std, log(min_std)))`` (pytorch-maml-rl's ``NormalMLPPolicy``).

    Args:
      action_dim: the action dimension.
      hidden_sizes: hidden layer widths (``(64, 64)`` in pytorch-maml-rl's 2D-navigation config; the MAML paper's
        code used ``(100, 100)`` with ReLU).
      activation: ``"tanh"``, ``"relu"`` or a callable.
      init_std: the initial standard deviation.
      min_std: the smallest standard deviation.

    >>> policy = gaussian_mlp(2, (8,))
    >>> params = policy.init(jax.random.PRNGKey(0), 3)
    >>> jax.eval_shape(policy.sample, params, jax.random.PRNGKey(1), jnp.zeros(3)).shape
    (2,)

    References:
      Finn, Abbeel, Levine (2017). Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML.
    """
    action_dim = check_positive_int("action_dim", action_dim)
    sizes, act = _check_sizes(hidden_sizes), _activation(activation)
    if not init_std > 0 or not min_std > 0:
        raise ValueError(f"init_std and min_std must be > 0, got init_std={init_std!r}, min_std={min_std!r}.")

    def init(key, obs_dim):
        obs_dim = check_positive_int("obs_dim", obs_dim)
        params: dict[str, Any] = dict(mlp_init(key, (obs_dim, *sizes, action_dim)))
        params["log_std"] = jnp.full((action_dim,), math.log(init_std), jnp.result_type(float))
        return params

    def mean(params, obs):
        return mlp_apply({k: v for k, v in params.items() if k != "log_std"}, obs, act)

    return _gaussian(mean, init, action_dim, min_std, f"gaussian_mlp{sizes}")


def categorical_mlp(
    num_actions: int, hidden_sizes: Sequence[int] = (32, 32), activation: str | Callable = "relu"
) -> Policy:
    """A categorical policy whose logits are an MLP of the observation (pytorch-maml-rl's ``CategoricalMLPPolicy``).

    Parameters: ``{"hidden_0": {"w", "b"}, ..., "head": {"w", "b"}}``; ``hidden_sizes=()`` is a linear policy.

    Args:
      num_actions: the number of actions.
      hidden_sizes: hidden layer widths (``(32, 32)`` with ReLU in pytorch-maml-rl's bandit configs).
      activation: ``"tanh"``, ``"relu"`` or a callable.

    >>> policy = categorical_mlp(3, ())
    >>> params = policy.init(jax.random.PRNGKey(0), 1)
    >>> jax.eval_shape(policy.sample, params, jax.random.PRNGKey(1), jnp.zeros(1)).dtype
    dtype('int32')
    """
    num_actions = check_positive_int("num_actions", num_actions, minimum=2)
    sizes, act = _check_sizes(hidden_sizes), _activation(activation)

    def init(key, obs_dim):
        obs_dim = check_positive_int("obs_dim", obs_dim)
        return mlp_init(key, (obs_dim, *sizes, num_actions))

    def logits(params, obs):
        return mlp_apply(params, obs, act)

    return _categorical(logits, init, num_actions, f"categorical_mlp{sizes}")


def policy_from_model(model: Any, distribution: str, action_dim: int, init_std: float = 1.0) -> Policy:
    """A policy whose network is a metajax ``Model`` (``init(key)``, ``apply(params, x)`` on a batch).

    For ``distribution="gaussian"`` the model gives the mean and the policy adds a learned ``log_std`` leaf:
    parameters ``{"model": ..., "log_std": (action_dim,)}``; for ``"categorical"`` the model gives the logits and
    the parameters are the model's.

    Args:
      model: a ``metajax.models.Model`` whose input shape is ``(obs_dim,)`` and whose output has ``action_dim``
        entries.
      distribution: ``"gaussian"`` or ``"categorical"``.
      action_dim: the action dimension or the number of actions.
      init_std: the Gaussian's initial standard deviation.

    >>> from metajax.models import mlp
    >>> policy = policy_from_model(mlp(2, (8,), 2), "gaussian", 2)
    >>> params = jax.eval_shape(lambda k: policy.init(k, 2), jax.random.PRNGKey(0))
    >>> jax.eval_shape(policy.sample, params, jax.random.PRNGKey(1), jnp.zeros(2)).shape
    (2,)
    """
    action_dim = check_positive_int("action_dim", action_dim)
    if distribution not in ("gaussian", "categorical"):
        raise ValueError(f"distribution must be 'gaussian' or 'categorical', got {distribution!r}.")
    input_shape = tuple(model.input_shape)

    def check_obs_dim(obs_dim):
        if input_shape != (obs_dim,):
            raise ValueError(f"obs_dim must match the model's input shape {input_shape}, got obs_dim={obs_dim}.")

    def net(params, obs):
        return model.apply(params, obs[None])[0]

    if distribution == "categorical":

        def init_c(key, obs_dim):
            check_obs_dim(obs_dim)
            return model.init(key)

        return _categorical(net, init_c, action_dim, "categorical_model")

    def init_g(key, obs_dim):
        check_obs_dim(obs_dim)
        return {"model": model.init(key), "log_std": jnp.full((action_dim,), math.log(init_std), jnp.float32)}

    return _gaussian(lambda p, o: net(p["model"], o), init_g, action_dim, 1e-6, "gaussian_model")


def check_policy(policy: Policy, env: Environment, params: Params | None = None, argname: str = "policy") -> None:
    """Check that ``policy`` acts in ``env``'s action space (and, given ``params``, that its actions have the shape).

    Runs on shapes only (``jax.eval_shape``), before any compute.

    Raises:
      ValueError: naming ``argname``, the action space expected and the one received.
    """
    space, own = env.action_space, policy.action_space
    if space.kind not in ACTION_KINDS:
        raise ValueError(f"env.action_space.kind must be one of {ACTION_KINDS}, got {space.kind!r}.")
    if (own.kind, own.dim) != (space.kind, space.dim):
        raise ValueError(
            f"{argname} must act in {env.name}'s action space: {space.kind} with dim {space.dim}; "
            f"got a {own.kind} policy with dim {own.dim}."
        )
    if params is None:
        return
    obs = jax.ShapeDtypeStruct((env.obs_dim,), jnp.result_type(float))
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    try:
        out = jax.eval_shape(policy.sample, params, key, obs)
    except Exception as err:  # noqa: BLE001 - reported with the shapes involved
        raise ValueError(
            f"{argname}.sample cannot act on an observation of shape ({env.obs_dim},) with these params: {err}"
        ) from err
    dist = jax.eval_shape(policy.apply, params, obs)
    ends = [leaf.shape[-1:] for leaf in jax.tree_util.tree_leaves(dist)]
    if any(e != (space.dim,) for e in ends):
        raise ValueError(
            f"{argname}'s output must have {space.dim} entries per observation ({space.kind} actions of {env.name}); "
            f"got distribution parameters of shapes {[leaf.shape for leaf in jax.tree_util.tree_leaves(dist)]}."
        )
    want = () if space.kind == "discrete" else (space.dim,)
    integer = jnp.issubdtype(out.dtype, jnp.integer)
    if out.shape != want or integer != (space.kind == "discrete"):
        raise ValueError(
            f"{argname}'s actions must be {'an integer scalar' if space.kind == 'discrete' else 'a float vector'} of "
            f"shape {want} for {env.name}; got shape {out.shape} and dtype {out.dtype}. Does the policy's output "
            "layer match the action space?"
        )
