"""Leave-one-task-out cross-validation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from metajax._src import loto
from metajax._src.data import sinusoid
from metajax.models import mlp, mse_loss


def test_fold_sampling_never_uses_the_left_out_task():
    draws = jax.vmap(lambda k: loto.exclude_and_sample(k, 6, jnp.asarray(2), 4))(
        jax.random.split(jax.random.PRNGKey(0), 500)
    )
    draws = np.asarray(draws)
    assert not (draws == 2).any()
    assert all(len(set(row)) == 4 for row in draws)  # without replacement
    assert set(np.unique(draws)) == {0, 1, 3, 4, 5}


@pytest.mark.x64
def test_loto_reports_held_out_and_seen_risk():
    model = mlp(hidden=(8,))
    pool = sinusoid.sample_tasks(jax.random.PRNGKey(1), 4, 5)
    learner = mj.maml(mse_loss(model.apply), "sgd", 1, inner_lr=0.01)
    params = jax.tree_util.tree_map(lambda x: x.astype("float64"), model.init(jax.random.PRNGKey(0)))
    r = loto.loto(learner, optax.adam(1e-2), params, pool, 30, 2, jax.random.PRNGKey(2), num_bootstrap=200)
    assert r["held_out"].shape == (4,) and r["seen"].shape == (4,)
    np.testing.assert_allclose(r["ratio"], r["held_out"].mean() / r["seen"].mean())
    lo, hi = r["ratio_ci"]
    assert lo <= r["ratio"] <= hi
    # training lowered the risk on the tasks each fold saw
    assert r["seen"].mean() < r["pooled_before"].mean()
    with pytest.raises(ValueError, match="meta_batch_size=4 exceeds the 3 tasks each fold trains on"):
        loto.loto(learner, optax.adam(1e-2), params, pool, 1, 4, jax.random.PRNGKey(2))


def _class_coded_images(num_classes=12, examples=4, size=16):
    """uint8 images whose every pixel is 20 * class id (so a drawn image names its class)."""
    vals = (20 * np.arange(num_classes, dtype=np.uint8))[:, None, None, None]
    return np.broadcast_to(vals, (num_classes, examples, size, size)).copy()


def test_episodes_only_from_allowed_classes():
    from metajax._src.data.episodes import sample_episodes

    images = jnp.asarray(_class_coded_images())
    groups = jnp.asarray([0] * 4 + [1] * 4 + [2] * 4)
    tasks = jax.jit(lambda k, g: sample_episodes(k, images, 64, 3, 1, 2, groups == g))(jax.random.PRNGKey(0), 1)
    drawn = np.unique(np.round(np.asarray(tasks.support[0]) * 255 / 20).astype(int))
    assert set(drawn) == {4, 5, 6, 7}
    drawn_q = np.unique(np.round(np.asarray(tasks.query[0]) * 255 / 20).astype(int))
    assert set(drawn_q) == {4, 5, 6, 7}


def test_leave_one_group_out_runs_every_fold_and_reports_the_ratio():
    from metajax.models import conv4, cross_entropy_loss

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 4, 16, 16), dtype=np.uint8)
    groups = np.asarray([0] * 4 + [1] * 4 + [2] * 4)
    model = conv4(ways=2, filters=2, image_size=16)
    learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 1, inner_lr=0.4, has_aux=True)
    params = model.init(jax.random.PRNGKey(0))
    kw = dict(ways=2, shots=1, queries=2, num_steps=20, meta_batch_size=4, key=jax.random.PRNGKey(1), eval_tasks=16)
    r = loto.leave_one_group_out(learner, optax.adam(1e-2), params, images, groups, num_bootstrap=100, **kw)
    assert list(r["groups"]) == [0, 1, 2]
    assert r["held_out"].shape == r["seen"].shape == r["before_seen"].shape == (3,)
    np.testing.assert_allclose(r["ratio"], r["held_out"].mean() / r["seen"].mean())
    assert r["ratio_ci"][0] <= r["ratio"] <= r["ratio_ci"][1]
    # random images: the classes a fold trains on are memorised, the held-out ones cannot be
    assert r["seen"].mean() < r["before_seen"].mean()
    assert r["ratio"] > 1
    with pytest.raises(ValueError, match="groups must have shape \\(12,\\)"):
        loto.leave_one_group_out(learner, optax.adam(1e-2), params, images, groups[:5], **kw)
    with pytest.raises(ValueError, match="group 1 has 1 classes"):
        loto.leave_one_group_out(learner, optax.adam(1e-2), params, images, np.r_[[0] * 11, 1], folds=[1], **kw)
    with pytest.raises(ValueError, match="folds: group 7 has no classes"):
        loto.leave_one_group_out(learner, optax.adam(1e-2), params, images, groups, folds=[7], **kw)
