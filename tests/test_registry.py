"""The algorithm registry and the one calling convention of every learner."""

import inspect

import jax
import jax.numpy as jnp
import optax
import pytest
from ml_collections import ConfigDict

import metajax as mj
from metajax.experiment import ALGORITHMS, REGISTRY, algorithm_spec, available_configs, build_learner, load_config

FACTORIES = {
    "maml": mj.maml,
    "fomaml": mj.fomaml,
    "imaml": mj.imaml,
    "reptile": mj.reptile,
    "meta_sgd": mj.meta_sgd,
    "anil": mj.anil,
    "maml_plus_plus": mj.maml_plus_plus,
}


def loss(w, batch):
    x, y = batch
    return jnp.mean((x * w["a"] + w["b"] - y) ** 2)


def tasks(n=3):
    x = jnp.linspace(-1.0, 1.0, n * 4).reshape(n, 4)
    return mj.Task((x, 2 * x), (x + 0.1, 2 * x + 0.2))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_factory_starts_loss_inner_opt_num_inner_steps_and_the_rest_is_keyword_only(name):
    params = list(inspect.signature(FACTORIES[name]).parameters.values())
    assert [p.name for p in params[:3]] == ["loss_fn", "inner_opt", "num_inner_steps"]
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[3:]), name


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_swapping_maml_for_any_factory_works_and_every_learner_has_one_convention(name):
    """The README's "swap mj.maml for ..." with maml's own arguments (anil also names its head)."""
    extra = {"head": "^b$"} if name == "anil" else {}
    if name == "maml_plus_plus":
        extra = {"stateful": False}
    learner = FACTORIES[name](loss, "sgd", 1, inner_lr=0.1, **extra)
    w = {"a": jnp.zeros(()), "b": jnp.zeros(())}
    mp = learner.init(w)
    direction, metrics, model_state = learner.meta_grad(mp, tasks())
    assert model_state is None and "support_loss" in metrics
    assert jax.tree_util.tree_structure(direction) == jax.tree_util.tree_structure(mp)
    one = jax.tree_util.tree_map(lambda x: x[0], tasks())
    d1, _, s1 = learner.task_direction(mp, one, mj.MetaContext(jnp.int32(3)))
    assert s1 is None and jax.tree_util.tree_structure(d1) == jax.tree_util.tree_structure(mp)
    res = learner.adapt(mp, one.support, model_state=None, key=None)
    assert res.state is None
    ms = mj.make_meta_step(learner, optax.sgd(0.1))
    state = ms.init(mp)
    assert isinstance(state, mj.MetaState) and state.model_state is None and state.key is None


def test_the_registry_is_the_only_list_of_algorithms_and_every_config_names_one_of_them():
    assert ALGORITHMS == tuple(REGISTRY)
    seen = set()
    for name in available_configs():
        config = load_config(name, smoke=True)
        spec = algorithm_spec(config.algorithm)
        seen.add(spec.name)
        for key in spec.inner_keys:  # every key a spec reads is one the configs may set
            assert isinstance(key, str) and key
    assert seen == set(ALGORITHMS), f"algorithms without a config: {set(ALGORITHMS) - seen}"
    with pytest.raises(ValueError, match="algorithm must be one of"):
        algorithm_spec("mamlx")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_registry_entry_builds_its_learner_from_an_inner_section(name):
    spec = REGISTRY[name]
    inner = ConfigDict(
        {"opt": "sgd", "lr": 0.1, "steps": 2, "gradient": "exact", "granularity": "parameter", "head": "^b$"}
    )
    if spec.stateful:  # a model with state: its loss takes (params, state, batch, step, key)

        def stateful_loss(p, state, batch, step, key):
            del step, key
            return loss(p, batch), state

        learner = build_learner(name, stateful_loss, inner)
        mp = learner.init({"a": jnp.zeros(()), "b": jnp.zeros(())})
        state = {"count": jnp.zeros(())}
        ctx = mj.MetaContext(jnp.int32(0), state, None)
        _, _, new_state = learner.meta_grad(mp, tasks(), ctx)
        assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    else:
        learner = build_learner(name, loss, inner)
        mp = learner.init({"a": jnp.zeros(()), "b": jnp.zeros(())})
        learner.meta_grad(mp, tasks())
    assert learner.num_inner_steps == 2
