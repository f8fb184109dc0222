"""Mixed precision: models computed in bfloat16/float16 with float32 parameters, gradients, updates and losses."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax as mj
from metajax.models import CONV_IMPLS, batch_norm, conv4, cross_entropy_loss, mlp, with_compute_dtype


def _tasks(num=2, seed=0):
    rng = np.random.default_rng(seed)
    x = lambda n: jnp.asarray((rng.random((num, n, 28, 28, 1)) > 0.7).astype(np.float32))  # noqa: E731
    y = lambda n: jnp.tile(jnp.repeat(jnp.arange(5), n // 5), (num, 1))  # noqa: E731
    return mj.Task((x(5), y(5)), (x(10), y(10)))


def test_float32_is_the_model_itself():
    m = mlp()
    assert with_compute_dtype(m, "float32") is m


@pytest.mark.parametrize("conv", [c for c in CONV_IMPLS if c != "auto"])
def test_every_convolution_computes_in_bfloat16_and_returns_float32(conv):
    m32 = conv4(filters=8, conv=conv)
    m16 = conv4(filters=8, conv=conv, compute_dtype="bfloat16")
    params = m32.init(jax.random.PRNGKey(0))
    x = _tasks().query[0][0]
    out16, out32 = m16.apply(params, x), m32.apply(params, x)
    assert out16.dtype == jnp.float32
    # bfloat16 keeps 8 bits of mantissa: agreement to a few per cent of the logits' scale
    assert float(jnp.max(jnp.abs(out16 - out32))) < 0.05 * float(jnp.max(jnp.abs(out32))) + 0.05
    jaxpr = str(jax.make_jaxpr(m16.apply)(params, x))
    assert "bf16" in jaxpr


def test_gradients_and_meta_gradients_stay_float32_and_close():
    model32 = conv4(filters=8, conv="patches")
    model16 = conv4(filters=8, conv="patches", compute_dtype="bfloat16")
    params = model32.init(jax.random.PRNGKey(0))
    tasks = _tasks(num=2)
    grads = {}
    for name, model in (("f32", model32), ("bf16", model16)):
        learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 1, inner_lr=0.4, has_aux=True)
        g, _, _ = jax.jit(learner.meta_grad)(learner.init(params), tasks)
        chex.assert_trees_all_equal_dtypes(g, params)
        grads[name] = np.concatenate([np.ravel(v) for v in jax.tree.leaves(g)])
    a, b = grads["bf16"], grads["f32"]
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    # bfloat16 keeps 8 mantissa bits: measured cosine 0.90 here (max-pool choices flip under its rounding)
    assert cos > 0.8, cos


def test_batch_norm_takes_its_statistics_in_float32():
    x = 10.0 + jax.random.normal(jax.random.PRNGKey(0), (16, 8, 8, 3))  # 1,024 values of mean 10 per channel
    scale, bias = jnp.ones(3), jnp.zeros(3)
    y32 = batch_norm(x, scale, bias, None, 1e-5)
    y16 = batch_norm(x.astype(jnp.bfloat16), scale.astype(jnp.bfloat16), bias.astype(jnp.bfloat16), None, 1e-5)
    assert y16.dtype == jnp.bfloat16
    # the input's own bfloat16 rounding (+- 0.03 at 10) dominates; bfloat16 sums of 1,024 values would not
    assert float(jnp.max(jnp.abs(y16.astype(jnp.float32) - y32))) < 0.1

    def loss(x):
        return jnp.sum(batch_norm(x, scale.astype(x.dtype), bias.astype(x.dtype), 4, 1e-5) ** 2)

    g = jax.grad(loss)(x.astype(jnp.bfloat16))
    assert g.dtype == jnp.bfloat16


@pytest.mark.parametrize("bad", ["float64", "fp16", None, 16])
def test_a_bad_compute_dtype_is_named(bad):
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        conv4(filters=8, compute_dtype=bad)
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        mlp(compute_dtype=bad)
