"""Run by test_sharding.py in a subprocess with 8 simulated CPU devices; prints one JSON line."""

import json
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import metajax as mj  # noqa: E402


def loss(w, batch):
    x, y = batch
    return jnp.mean((jnp.tanh(x @ w["a"]) @ w["b"] - y) ** 2)


def eval_on_meshes(learner, params, tasks):
    """Adaptation curves and few-shot accuracies of 12 and 16 tasks on 1, 2 and 8 devices vs one jit (max abs diff)."""
    from metajax.evaluation import accuracy_after_adaptation, adaptation_curves

    def qloss(p, query, support):
        value = loss(p, query)
        return value, {"accuracy": jnp.exp(-value)}  # any per-task aux stands in for the accuracy

    out = {}
    for num in (12, 16):  # 12 tasks are padded to 16 on 8 devices
        sub = jax.tree_util.tree_map(lambda a, num=num: a[:num], tasks)
        ref_curves = adaptation_curves(learner.adapt, params, learner.query_loss, sub, 2, task_chunk=1)
        ref_acc = accuracy_after_adaptation(learner, params, qloss, sub, 2, 1)
        for n in (1, 2, 8):
            mesh = mj.parallel.make_mesh(n)
            curves = adaptation_curves(learner.adapt, params, learner.query_loss, sub, 2, task_chunk=1, mesh=mesh)
            acc = accuracy_after_adaptation(learner, params, qloss, sub, 2, 1, mesh=mesh)
            # in calls of 5 tasks, rounded up to a multiple of the devices (6 on 2, 8 on 8), the last one padded
            acc5 = accuracy_after_adaptation(learner, params, qloss, sub, 2, 1, mesh=mesh, tasks_per_call=5)
            assert curves.shape == ref_curves.shape == (num, 3), curves.shape
            assert acc[0].shape == acc5[0].shape == (num,)
            out[f"{num}@{n}"] = max(
                float(abs(curves - ref_curves).max()),
                *(float(abs(a - b).max()) for a, b in zip((*acc, *acc5), (*ref_acc, *ref_acc), strict=True)),
            )
    return out


def stateful_loss(w, state, batch, step, key):
    """A loss with a running mean of its inputs as state and a keyed input dropout (MAML++ plumbing)."""
    del step
    x, y = batch
    keep = jax.random.bernoulli(key, 0.8, x.shape)
    new_state = {"mean": 0.9 * state["mean"] + 0.1 * jnp.mean(x, axis=0)}
    return loss(w, (jnp.where(keep, x / 0.8, 0.0), y)), new_state


def stateful_on_meshes(w, tasks):
    """MAML++ (LSLR, MSL, DA, state and per-task keys): 3 steps on 1, 2, 8 devices vs one device (max abs diff)."""
    learner = mj.maml_plus_plus(stateful_loss, None, 2, inner_lr=0.1, msl_anneal_steps=2, first_order_steps=1)
    state0, key = {"mean": jnp.zeros((2,))}, jax.random.PRNGKey(5)

    def run(mesh):
        ms = mj.make_meta_step(learner, optax.adam(1e-2), mesh=mesh)
        mp = learner.init(jax.tree_util.tree_map(jnp.copy, w))
        st = ms.init(mp, state0, key)
        t = tasks
        if mesh is not None:
            mp, st, t = (
                mj.parallel.replicate(mp, mesh),
                mj.parallel.replicate(st, mesh),
                mj.parallel.shard_tasks(t, mesh),
            )
        step = jax.jit(ms.step)
        for _ in range(3):
            mp, st, _ = step(mp, st, t)
        return mp, st.model_state

    ref = run(None)
    diffs = {}
    for n in (1, 2, 8):
        got = run(mj.parallel.make_mesh(n))
        diffs[n] = max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref), strict=True)
        )
    return diffs


def main():
    w = {
        "a": jax.random.normal(jax.random.PRNGKey(0), (2, 16)) * 0.5,
        "b": jax.random.normal(jax.random.PRNGKey(1), (16, 1)) * 0.5,
    }
    x = jax.random.normal(jax.random.PRNGKey(2), (16, 10, 2))
    y = jnp.sin(3 * x[..., :1]) * jnp.arange(1, 17, dtype=jnp.float32)[:, None, None] / 8
    tasks = mj.Task((x[:, :5], y[:, :5]), (x[:, 5:], y[:, 5:]))
    learners = {
        "maml": mj.maml(loss, "sgd", 2, inner_lr=0.1),
        "maml_map": mj.maml(loss, "sgd", 2, inner_lr=0.1, task_chunk=1),
        "fomaml": mj.fomaml(loss, "momentum", 2, inner_lr=0.1),
        "reptile": mj.reptile(loss, "sgd", 3, inner_lr=0.1),
        "imaml": mj.imaml(loss, "sgd", 5, inner_lr=0.1, lam=2.0),
    }
    out = {"devices": len(jax.devices()), "errors": {}}
    for name, learner in learners.items():
        ref_ms = mj.make_meta_step(learner, optax.adam(1e-2))
        params, state = w, ref_ms.init(w)
        for _ in range(3):
            params, state, _ = jax.jit(ref_ms.step)(params, state, tasks)
        diffs = {}
        for n in (1, 2, 8):
            mesh = mj.parallel.make_mesh(n)
            ms = mj.make_meta_step(learner, optax.adam(1e-2), mesh=mesh)
            w_copy = jax.tree_util.tree_map(jnp.copy, w)  # the step donates its inputs
            p, s = mj.parallel.replicate(w_copy, mesh), mj.parallel.replicate(ms.init(w_copy), mesh)
            t = mj.parallel.shard_tasks(tasks, mesh)
            step = jax.jit(ms.step, donate_argnums=(0, 1))
            for _ in range(3):
                p, s, m = step(p, s, t)
            diffs[n] = max(
                float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(params), strict=True)
            )
            assert p["a"].sharding.is_fully_replicated
        out[name] = diffs
    out["maml++"] = stateful_on_meshes(w, tasks)
    moved = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(w), strict=True)
    )
    out["moved"] = moved
    out["eval"] = eval_on_meshes(learners["maml"], params, tasks)
    mesh = mj.parallel.make_mesh(8)
    odd = jax.tree_util.tree_map(lambda a: a[:12], tasks)
    for what, fn in (
        ("shard_tasks", lambda: mj.parallel.shard_tasks(odd, mesh)),
        (
            "step",
            lambda: jax.jit(mj.make_meta_step(learners["maml"], optax.sgd(0.1), mesh=mesh).step)(
                w, mj.make_meta_step(learners["maml"], optax.sgd(0.1)).init(w), odd
            ),
        ),
        ("mesh", lambda: mj.parallel.make_mesh(9)),
    ):
        try:
            fn()
        except ValueError as err:
            out["errors"][what] = str(err)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
