"""What a MAML++ meta-step costs beside MAML's, variants side by side in one process.

    python benchmarks/mamlpp_cost.py                 # ~10 min on one core
    python benchmarks/mamlpp_cost.py --rounds 7 --meta-batch 8

Workload: Omniglot-shaped synthetic tasks (Conv4-64 with im2col convolutions, 28x28x1, 5-way 1-shot, 15 queries
per class), k = 5 inner steps, tasks mapped one at a time (``task_chunk=1``, the CPU default). Variants:

* ``maml``: :func:`metajax.maml` with SGD (the stateless path);
* ``maml++ options off``: :func:`metajax.maml_plus_plus` on the same stateless model with LSLR, MSL and DA off
  (the cost of the stateful machinery itself);
* ``maml++ LSLR``: learned per-layer per-step rates only;
* ``maml++ full``: :func:`metajax.models.conv4_per_step` (per-step batch-norm weights and running statistics),
  LSLR, the multi-step loss and derivative-order annealing, one compiled program timed in its three phases:
  first order with the multi-step loss, exact with it, and exact with the last step's query loss only.

Each variant is compiled once; the rounds alternate between variants so that drift in the machine's speed hits all
of them, and the table gives the median seconds per meta-step and the ratio to ``maml``. Results go to
``benchmarks/results/DATE-mamlpp-cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, synthetic_tasks, write_results  # noqa: E402


def build(meta_batch: int, steps: int):
    import jax
    import jax.numpy as jnp
    import optax

    import metajax as mj
    import metajax.models as mm

    tasks = synthetic_tasks(jax.random.PRNGKey(0), meta_batch, 1)
    plain = mm.conv4(5, 64, conv="patches")
    per_step = mm.conv4_per_step(5, 64, num_steps=steps, conv="patches")
    loss = mm.cross_entropy_loss(plain.apply)
    params = plain.init(jax.random.PRNGKey(1))
    ps_params, ps_state = per_step.init(jax.random.PRNGKey(1))
    outer = optax.adam(1e-3)
    common = {"has_aux": True, "task_chunk": 1}
    learners = {
        "maml": (mj.maml(loss, "sgd", steps, inner_lr=0.4, **common), params, None, None),
        "maml++ options off": (
            mj.maml_plus_plus(loss, None, steps, inner_lr=0.4, lslr=False, stateful=False, **common),
            params,
            None,
            0,
        ),
        "maml++ LSLR": (mj.maml_plus_plus(loss, None, steps, inner_lr=0.4, stateful=False, **common), params, None, 0),
    }
    full = mj.maml_plus_plus(
        mm.stateful_cross_entropy_loss(per_step),
        None,
        steps,
        inner_lr=0.4,
        msl_anneal_steps=2 * 10**6,
        first_order_steps=10**6,
        adapt="Conv|head",
        model_steps=steps,
        **common,
    )
    # one program, three phases: first order with the multi-step loss, exact with it, exact with the last step only
    learners["maml++ full: first order, MSL"] = (full, ps_params, ps_state, 0)
    learners["maml++ full: exact, MSL"] = (full, ps_params, ps_state, 10**6)
    learners["maml++ full: exact, last step only"] = (full, ps_params, ps_state, 3 * 10**6)
    runs = {}
    compiled_full = None
    for name, (learner, p, state, start) in learners.items():
        ms = mj.make_meta_step(learner, outer)
        mp = learner.init(p)
        st = ms.init(mp, state)._replace(step=jnp.int32(start))
        t = time.perf_counter()
        if name.startswith("maml++ full") and compiled_full is not None:
            step, compile_s = compiled_full, 0.0  # the same program: derivative-order annealing does not recompile
        else:
            step = jax.jit(ms.step).lower(mp, st, tasks).compile()
            compile_s = time.perf_counter() - t
            if name.startswith("maml++ full"):
                compiled_full = step
        runs[name] = {"step": step, "args": (mp, st, tasks), "compile_s": compile_s, "times": []}
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--meta-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="inner steps k")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    import jax

    runs = build(args.meta_batch, args.steps)
    for run in runs.values():  # warm-up
        jax.block_until_ready(run["step"](*run["args"]))
    for r in range(args.rounds):
        for run in runs.values():
            t = time.perf_counter()
            jax.block_until_ready(run["step"](*run["args"]))
            run["times"].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    base = statistics.median(runs["maml"]["times"])
    rows = []
    for name, run in runs.items():
        med = statistics.median(run["times"])
        rows.append({"variant": name, "median_s": med, "ratio": med / base, "compile_s": run["compile_s"]})
    info = machine()
    md = [
        f"MAML++ cost per meta-step beside MAML: Conv4-64 (im2col), 5-way 1-shot 15 queries, k={args.steps}, "
        f"meta-batch {args.meta_batch} (lax.map over tasks), {args.rounds} alternating rounds, median.",
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']}.",
        "",
        "| variant | s / meta-step | vs maml | compile s |",
        "|---|---|---|---|",
    ]
    for row in rows:
        md.append(f"| {row['variant']} | {row['median_s']:.3f} | {row['ratio']:.2f}x | {row['compile_s']:.1f} |")
    md.append("")
    md.append(
        "The three 'full' rows are one compiled program (the phases switch with lax.cond on the outer step); its "
        "compile time includes every branch. The multi-step loss scores the 75-image query set after each of the "
        "k steps instead of once."
    )
    payload = {"machine": info, "args": vars(args), "rows": rows, "times": {k: v["times"] for k, v in runs.items()}}
    write_results(args.out, "mamlpp-cost", payload, "\n".join(md) + "\n", config=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
