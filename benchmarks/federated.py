"""Federated view of meta-learning: clients adapt locally and upload one direction per round.

    python benchmarks/federated.py      # ~2 min on 2 cores; writes benchmarks/results/federated.{json,md}

A server holds the meta-parameters; each round it sends them to 10 of 100
clients, each client holds its own task (its private support and query data never
leave it), runs the algorithm's inner loop and sends back its task direction
(the MAML/FOMAML meta-gradient, or Reptile's displacement); the server
averages the uploads and takes an Adam step. Reported per algorithm:

* bytes uploaded per client per round, measured on the arrays the client
  returns (the parameter vector's size: the same for MAML, FOMAML and Reptile);
* client compute per round: XLA's FLOP count of the compiled client program
  (``cost_analysis``) and its median wall time;
* the post-adaptation query MSE on 200 held-out tasks after the rounds,
  so the simulation is a real training run and not only an accounting.

Models: the MAML paper's sinusoid MLP (1-40-40-1) for the training
simulation, and the Omniglot-shaped Conv4-64 (5-way 1-shot, 15 queries) for
the per-client accounting only (compiled, not run).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from harness import machine
from provenance import provenance, write_json

import metajax as mj
import metajax.data as mjd
from metajax.models import conv4, cross_entropy_loss, mlp, mse_loss

POOL, CLIENTS, ROUNDS, K = 100, 10, 2000, 5


def client_program(learner, params, task):
    """What one client runs: its direction for its own task (upload) plus metrics (kept locally)."""
    fn = jax.jit(lambda p, t: learner.task_direction(p, t)[0])
    compiled = fn.lower(params, task).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    upload = compiled(params, task)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, task))
        times.append(time.perf_counter() - t0)
    nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(upload))
    return {"upload_bytes": int(nbytes), "flops": float(cost.get("flops", float("nan"))), "s": statistics.median(times)}


def learners(loss, lr):
    return {
        "maml": mj.maml(loss, "sgd", K, inner_lr=lr),
        "fomaml": mj.fomaml(loss, "sgd", K, inner_lr=lr),
        "reptile": mj.reptile(loss, "sgd", K, inner_lr=lr),
    }


def simulate(name, learner, params0):
    """ROUNDS rounds of C clients; each client's task is fixed for the whole run (its private data source)."""
    outer = optax.adam(1e-3) if name != "reptile" else optax.sgd(1.0)

    # a pool of POOL clients, each with its own fixed task (amplitude, phase); CLIENTS of them take
    # part in a round and draw fresh local points
    pool = mjd.sinusoid_task_params(jax.random.PRNGKey(7), POOL)

    @jax.jit
    def round_(params, opt_state, key):
        kc, kd = jax.random.split(key)
        chosen = jax.random.choice(kc, POOL, (CLIENTS,), replace=False)
        tp = jax.tree_util.tree_map(lambda a: a[chosen], pool)
        tasks = mjd.sinusoid_tasks_from_params(kd, tp, 10, 10)
        uploads = jax.vmap(lambda t: learner.task_direction(params, t)[0])(tasks)  # one per client
        mean = jax.tree_util.tree_map(lambda u: jnp.mean(u, axis=0), uploads)  # the server's aggregation
        updates, opt_state = outer.update(mean, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = params0, outer.init(params0)
    for r in range(ROUNDS):
        params, opt_state = round_(params, opt_state, jax.random.PRNGKey(1000 + r))
    held_out = mjd.sinusoid_tasks(jax.random.PRNGKey(99), 200, 10, 100)
    risk = jax.jit(lambda p: mj.diagnostics.post_adaptation_risk(learner, p, held_out))(params)
    return float(jnp.mean(risk)), float(np.percentile(np.asarray(risk), 50))


def main() -> int:
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    rows = []
    model = mlp()
    params = model.init(jax.random.PRNGKey(0))
    task = jax.tree_util.tree_map(lambda x: x[0], mjd.sinusoid_tasks(jax.random.PRNGKey(1), 1, 10, 10))
    for name, learner in learners(mse_loss(model.apply), 0.01).items():
        acc = client_program(learner, params, task)
        t0 = time.perf_counter()
        mean_risk, median_risk = simulate(name, learner, params)
        rows.append(
            {
                "model": "sinusoid MLP 1-40-40-1",
                "algorithm": name,
                **acc,
                "risk": mean_risk,
                "risk_median": median_risk,
                "train_s": time.perf_counter() - t0,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    net = conv4(filters=64)
    cparams = net.init(jax.random.PRNGKey(0))
    ctask = mj.Task(
        (jnp.zeros((5, 28, 28, 1)), jnp.arange(5)),
        (jnp.zeros((75, 28, 28, 1)), jnp.repeat(jnp.arange(5), 15)),
    )
    for name, factory in (("maml", mj.maml), ("fomaml", mj.fomaml), ("reptile", mj.reptile)):
        learner = factory(cross_entropy_loss(net.apply), "sgd", 1, inner_lr=0.4, has_aux=True)
        acc = client_program(learner, cparams, ctask)
        rows.append({"model": "Conv4-64, Omniglot 5-way 1-shot (k = 1)", "algorithm": name, **acc})
        print(rows[-1], file=sys.stderr, flush=True)
    info = machine()
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; jax {info['jax']}. {CLIENTS} of {POOL} clients per round, "
        f"{ROUNDS} rounds, "
        f"k = {K} inner SGD steps (sinusoid); held-out risk = query MSE after k steps on 200 new tasks.",
        "",
        "| model | algorithm | upload per client per round | client GFLOP per round | client time (median) | "
        "held-out MSE after training (mean / median) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        risk = f"{r['risk']:.3f} / {r['risk_median']:.3f}" if "risk" in r else "(not trained)"
        lines.append(
            f"| {r['model']} | {r['algorithm']} | {r['upload_bytes']:,} B | {r['flops'] / 1e9:.4g} | "
            f"{r['s'] * 1e3:.3g} ms | {risk} |"
        )
    md = "\n".join(lines) + "\n"
    (out / "federated.md").write_text(md)
    config = {"pool": POOL, "clients": CLIENTS, "rounds": ROUNDS, "k": K}  # the script takes no arguments
    write_json(out / "federated.json", {"machine": info, "rows": rows}, provenance(argv=[], config=config))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
