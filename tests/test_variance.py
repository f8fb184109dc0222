"""Meta-gradient variance decomposition: the estimator on synthetic data, and alpha^2 scaling on sinusoid."""

import jax
import numpy as np
import pytest

import metajax as mj
from metajax._src import variance as v
from metajax.models import mlp, mse_loss


def test_components_recover_known_variances():
    rng = np.random.default_rng(0)
    t, s, q, p = 60, 12, 12, 5
    sd_task, sd_sup, sd_q, sd_e = 2.0, 1.0, 0.5, 0.3
    g = (
        sd_task * rng.standard_normal((t, 1, 1, p))
        + sd_sup * rng.standard_normal((t, s, 1, p))
        + sd_q * rng.standard_normal((t, 1, q, p))
        + sd_e * rng.standard_normal((t, s, q, p))
    )
    c = v.components(g)
    np.testing.assert_allclose(c["task"], p * sd_task**2, rtol=0.25)
    np.testing.assert_allclose(c["support"], p * sd_sup**2, rtol=0.1)
    np.testing.assert_allclose(c["query"], p * (sd_q**2 + sd_e**2), rtol=0.1)
    with pytest.raises(ValueError, match="at least 2 tasks, supports and queries"):
        v.components(g[:, :1])


@pytest.mark.x64
def test_support_component_grows_like_alpha_squared():
    model = mlp(hidden=(20, 20))
    params = jax.tree_util.tree_map(lambda x: x.astype("float64"), model.init(jax.random.PRNGKey(0)))
    tasks = v.nested_sinusoid_tasks(jax.random.PRNGKey(1), 8, 8, 8)
    alphas = [1e-4, 3e-4, 1e-3]
    support = []
    for a in alphas:
        learner = mj.fomaml(mse_loss(model.apply), "sgd", 1, inner_lr=a)
        support.append(v.variance_decomposition(learner.task_direction, params, tasks)["support"])
    assert 1.5 < v.fit_exponent(alphas, support) < 2.5, support
