"""Leave-one-task-out cross-validation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from metajax._src import loto
from metajax._src.data import sinusoid
from metajax._src.models import mlp, mse_loss


def test_fold_sampling_never_uses_the_left_out_task():
    draws = jax.vmap(lambda k: loto.exclude_and_sample(k, 6, jnp.asarray(2), 4))(
        jax.random.split(jax.random.PRNGKey(0), 500)
    )
    draws = np.asarray(draws)
    assert not (draws == 2).any()
    assert all(len(set(row)) == 4 for row in draws)  # without replacement
    assert set(np.unique(draws)) == {0, 1, 3, 4, 5}


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
