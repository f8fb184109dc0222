"""Bring your own model through the public API only: Flax NNX, Flax Linen and a plain pytree function.

Each is meta-trained with exact MAML for a few steps on sinusoid tasks (the query loss falls), and its exact
meta-gradient equals the one of the same network written another way (same initial weights): the wrappers
change nothing about the numbers.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import metajax as mj
from metajax.data import sinusoid_tasks
from metajax.models import Model, from_linen, from_nnx, mse_loss


class Net(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(1, 40, rngs=rngs)
        self.out = nnx.Linear(40, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def _plain():
    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (1, 40)),
            "b1": jnp.zeros((1, 40)),
            "w2": jax.random.normal(k2, (40, 1)) / 40**0.5,
            "b2": jnp.zeros((1, 1)),
        }

    def apply(params, x, reference=None):
        del reference
        h = jax.nn.relu(x @ params["w1"] + params["b1"])
        return h @ params["w2"] + params["b2"]

    return Model(init, apply, input_shape=(1,))


MODELS = {
    "nnx": lambda: from_nnx(lambda rngs: Net(rngs), input_shape=(1,)),
    "linen": lambda: from_linen(nn.Sequential([nn.Dense(40), nn.relu, nn.Dense(1)]), input_shape=(1,)),
    "plain": _plain,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_own_model_meta_trains_with_maml(name):
    model = MODELS[name]()
    learner = mj.maml(mse_loss(model.apply), "sgd", num_inner_steps=1, inner_lr=0.01)
    meta_step = mj.make_meta_step(learner, optax.adam(1e-2))
    params = learner.init(model.init(jax.random.PRNGKey(0)))
    state = meta_step.init(params)
    step = jax.jit(meta_step.step)
    held_out = sinusoid_tasks(jax.random.PRNGKey(10_000), meta_batch_size=25, shots=10)
    before = float(step(params, state, held_out)[2]["query_loss"])
    for i in range(150):
        params, state, _ = step(params, state, sinusoid_tasks(jax.random.PRNGKey(i), meta_batch_size=25, shots=10))
    after = float(step(params, state, held_out)[2]["query_loss"])
    assert np.isfinite(after) and after < 0.7 * before, (before, after)


@pytest.mark.x64
def test_wrappers_give_the_same_meta_gradient():
    """The NNX network and the plain function with the NNX network's weights: same exact meta-gradient (float64)."""
    nnx_model = MODELS["nnx"]()
    p = jax.tree.map(lambda a: a.astype(jnp.float64), nnx_model.init(jax.random.PRNGKey(3)))
    plain_params = {
        "w1": p["hidden"]["kernel"],
        "b1": p["hidden"]["bias"][None],
        "w2": p["out"]["kernel"],
        "b2": p["out"]["bias"][None],
    }
    tasks = jax.tree.map(
        lambda a: a.astype(jnp.float64), sinusoid_tasks(jax.random.PRNGKey(4), meta_batch_size=4, shots=10)
    )
    g_nnx = mj.maml(mse_loss(nnx_model.apply), "sgd", 2, inner_lr=0.01).meta_grad(p, tasks)[0]
    g_plain = mj.maml(mse_loss(_plain().apply), "sgd", 2, inner_lr=0.01).meta_grad(plain_params, tasks)[0]
    assert g_nnx["hidden"]["kernel"].dtype == g_plain["w1"].dtype == jnp.float64
    pairs = (
        (g_nnx["hidden"]["kernel"], g_plain["w1"]),
        (g_nnx["hidden"]["bias"], g_plain["b1"][0]),
        (g_nnx["out"]["kernel"], g_plain["w2"]),
        (g_nnx["out"]["bias"], g_plain["b2"][0]),
    )
    for a, b in pairs:
        # the same arithmetic through two wrappers; no entry is near 0 (the smallest is 0.09), so no atol
        np.testing.assert_allclose(a, b, rtol=1e-13)  # measured: 0 (bit-identical in float64)
