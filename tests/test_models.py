"""Models: Flax modules through a pure apply, the batch-norm policy, conv-net meta-gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_maml import directional_fd_check

import metajax as mj
from metajax._src.models import conv4, cross_entropy_loss, cross_entropy_query_loss, mlp


def f64(tree):
    return jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), tree)


@pytest.fixture(scope="module")
def small_conv():
    model = conv4(ways=3, filters=4, image_size=16)
    return model, f64(model.init(jax.random.PRNGKey(0)))


def image_tasks(key, num_tasks=2, ways=3, shots=1, query=2, size=16):
    k1, k2 = jax.random.split(key)
    xs = jax.random.normal(k1, (num_tasks, ways * shots, size, size, 1), jnp.float64)
    xq = jax.random.normal(k2, (num_tasks, ways * query, size, size, 1), jnp.float64)
    ys = jnp.tile(jnp.repeat(jnp.arange(ways), shots), (num_tasks, 1))
    yq = jnp.tile(jnp.repeat(jnp.arange(ways), query), (num_tasks, 1))
    return mj.Task((xs, ys), (xq, yq))


def test_mlp_shapes():
    m = mlp()
    p = m.init(jax.random.PRNGKey(0))
    assert m.apply(p, jnp.zeros((7, 1))).shape == (7, 1)
    assert [x.shape for x in jax.tree_util.tree_leaves(p)] == [(40,), (1, 40), (40,), (40, 40), (1,), (40, 1)]


@pytest.mark.parametrize("size,flat", [(28, 64), (84, 5 * 5 * 32)])
def test_conv4_input_sizes(size, flat):
    filters = 64 if size == 28 else 32
    model = conv4(ways=5, filters=filters, image_size=size, channels=1 if size == 28 else 3)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    assert shapes["params"]["head"]["kernel"].shape == (flat, 5)


def test_batchnorm_policy(small_conv):
    model, params = small_conv
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 16, 16, 1), jnp.float64)
    ref = jax.random.normal(jax.random.PRNGKey(2), (3, 16, 16, 1), jnp.float64)
    # non-transductive: each example's output depends only on itself and the reference batch
    full = model.apply(params, x, reference=ref)
    one_by_one = jnp.concatenate([model.apply(params, x[i : i + 1], reference=ref) for i in range(6)])
    np.testing.assert_allclose(full, one_by_one, rtol=1e-10, atol=1e-12)
    # transductive: changing other examples changes an example's output
    trans = model.apply(params, x)
    trans2 = model.apply(params, x.at[1:].multiply(3.0))
    assert not np.allclose(trans[0], trans2[0])
    nontrans2 = model.apply(params, x.at[1:].multiply(3.0), reference=ref)
    np.testing.assert_allclose(full[0], nontrans2[0], rtol=1e-10, atol=1e-12)


def test_conv4_exact_meta_gradient_matches_finite_differences_k2(small_conv):
    """Conv + batch norm + max-pool + ReLU, two inner steps (float64)."""
    model, params = small_conv
    tasks = image_tasks(jax.random.PRNGKey(3))
    learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 2, inner_lr=0.4, has_aux=True)
    grad, metrics = jax.jit(learner.meta_grad)(params, tasks)
    assert set(metrics) == {"query_loss", "support_loss", "query_accuracy"}
    directional_fd_check(learner, params, tasks, grad, jax.random.PRNGKey(4), eps=1e-6, num_dirs=2, rtol=1e-5)


def test_non_transductive_query_loss_is_used(small_conv):
    model, params = small_conv
    tasks = image_tasks(jax.random.PRNGKey(5))
    trans = mj.maml(cross_entropy_loss(model.apply), "sgd", 1, inner_lr=0.4, has_aux=True)
    nontrans = mj.maml(
        cross_entropy_loss(model.apply),
        "sgd",
        1,
        inner_lr=0.4,
        has_aux=True,
        query_loss_fn=cross_entropy_query_loss(model.apply, bn="support"),
    )
    _, m1 = jax.jit(trans.meta_grad)(params, tasks)
    _, m2 = jax.jit(nontrans.meta_grad)(params, tasks)
    np.testing.assert_allclose(m1["support_loss"], m2["support_loss"])
    assert not np.allclose(m1["query_loss"], m2["query_loss"])
    with pytest.raises(ValueError, match="bn must be"):
        cross_entropy_query_loss(model.apply, bn="running")


def test_patch_conv_equals_xla_conv():
    xla = conv4(ways=3, filters=4, image_size=16, conv="xla")
    patches = conv4(ways=3, filters=4, image_size=16, conv="patches")
    params = f64(xla.init(jax.random.PRNGKey(0)))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(patches.init(jax.random.PRNGKey(0)))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1), jnp.float64)
    np.testing.assert_allclose(xla.apply(params, x), patches.apply(params, x), rtol=1e-10, atol=1e-12)
    g1 = jax.grad(lambda p: jnp.sum(xla.apply(p, x) ** 2))(params)
    g2 = jax.grad(lambda p: jnp.sum(patches.apply(p, x) ** 2))(params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11), g1, g2)
    with pytest.raises(ValueError, match="conv must be one of"):
        conv4(conv="winograd")


def test_nnx_and_linen_modules_work_through_pure_apply():
    import flax.linen as nn
    from flax import nnx

    from metajax._src.data import sinusoid
    from metajax._src.models import from_linen, from_nnx, mse_loss

    class NNXMLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(1, 8, rngs=rngs)
            self.l2 = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    class LinenMLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(jnp.tanh(nn.Dense(8)(x)))

    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(1), 3, 5)
    for model in (from_nnx(NNXMLP, (1,)), from_linen(LinenMLP(), (1,))):
        params = f64(model.init(jax.random.PRNGKey(0)))
        other = f64(model.init(jax.random.PRNGKey(1)))
        assert not all(
            np.allclose(a, b)
            for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(other), strict=True)
        )
        learner = mj.maml(mse_loss(model.apply), "sgd", 2, inner_lr=0.05)
        grad, _ = jax.jit(learner.meta_grad)(params, tasks)
        directional_fd_check(learner, params, tasks, grad, jax.random.PRNGKey(2))


@pytest.mark.parametrize("size", [8, 7])
def test_max_pool_2x2_equals_reduce_window(size):
    """Values and gradients of the reshape max-pool equal flax's reduce_window pool (odd sizes drop the tail)."""
    import flax.linen as nn

    from metajax._src.models import max_pool_2x2

    x = jax.random.normal(jax.random.PRNGKey(0), (3, size, size, 4), jnp.float64)
    ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")  # noqa: E731
    np.testing.assert_array_equal(max_pool_2x2(x), ref(x))
    g = jax.grad(lambda x: jnp.sum(jnp.sin(max_pool_2x2(x))))(x)
    np.testing.assert_array_equal(g, jax.grad(lambda x: jnp.sum(jnp.sin(ref(x))))(x))
    # ReLU after the pool is the same function as ReLU before it
    np.testing.assert_array_equal(nn.relu(max_pool_2x2(x)), max_pool_2x2(nn.relu(x)))
