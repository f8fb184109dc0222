"""Mixed precision on the Omniglot workload: how far bfloat16/float16 meta-gradients are from float32, memory, speed.

    python benchmarks/mixed_precision.py --data-dir DIR        # ~10 min on 2 CPU cores
    python benchmarks/mixed_precision.py --compute-dtypes bfloat16 --tasks 8

Conv4-64, 5-way 1-shot, 15 queries per class, inner rate 0.4, on ``--tasks`` Omniglot training episodes (black-and-
white noise images without ``--data-dir``). For MAML k = 1 and 5 and FOMAML k = 1, with each compute dtype against
float32 on the same weights and tasks: the meta-gradient's cosine and error (max |x - x32| / max |x32|), XLA's
memory estimate per task of the meta-step (tasks vmapped) and its median step time over ``--repeats`` calls,
all dtypes of one algorithm timed alternately in one process. CPUs without 16-bit matrix units emulate bfloat16
(converting to float32 around each operation), so the CPU timings say nothing about a GPU or TPU: run
``device_check.py --compute-dtype bfloat16`` there. Results go to ``benchmarks/results/DATE-mixed.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="an Omniglot data directory (else black-and-white noise images)")
    parser.add_argument("--tasks", type=int, default=16, help="tasks in the meta-batch (default 16)")
    parser.add_argument("--compute-dtypes", default="bfloat16,float16", help="compared with float32 (default both)")
    parser.add_argument("--conv", default="xla", help="convolution implementation (default xla: the GPU/TPU path)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant and round (default 3)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    dtypes = ["float32", *[d for d in args.compute_dtypes.split(",") if d != "float32"]]

    import jax
    import jax.numpy as jnp
    import optax

    import metajax as mj
    from metajax.diagnostics import compiled_memory
    from metajax.models import COMPUTE_DTYPES, conv4, cross_entropy_loss

    for d in dtypes:
        if d not in COMPUTE_DTYPES:
            parser.error(f"--compute-dtypes takes entries of {COMPUTE_DTYPES}, got {d!r}")
    sys.path.insert(0, str(HERE))
    from harness import machine, write_results

    key = jax.random.PRNGKey(0)
    if args.data_dir:
        from metajax.data import load_omniglot, sample_episodes

        images = jnp.asarray(load_omniglot(args.data_dir)["train"].images)
        tasks = sample_episodes(key, images, args.tasks, ways=5, shots=1, queries=15)
        data = f"Omniglot training-split episodes ({args.data_dir})"
    else:
        ks, kq = jax.random.split(key)

        def part(k, n):
            x = (jax.random.uniform(k, (args.tasks, 5 * n, 28, 28, 1)) > 0.7).astype(jnp.float32)
            return x, jnp.tile(jnp.repeat(jnp.arange(5), n), (args.tasks, 1))

        tasks = mj.Task(part(ks, 1), part(kq, 15))
        data = "black-and-white noise images"
    params = conv4(filters=64, conv=args.conv).init(jax.random.PRNGKey(1))

    def flat(tree):
        return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(tree)])

    rows = []
    for alg, k in (("maml", 1), ("maml", 5), ("fomaml", 1)):
        compiled, grads = {}, {}
        for dt in dtypes:
            model = conv4(filters=64, conv=args.conv, compute_dtype=dt)
            learner = getattr(mj, alg)(cross_entropy_loss(model.apply), "sgd", k, inner_lr=0.4, has_aux=True)
            grads[dt] = flat(jax.jit(learner.meta_grad)(learner.init(params), tasks)[0])
            meta_step = mj.make_meta_step(learner, optax.adam(1e-3))
            state = meta_step.init(params)
            t0 = time.perf_counter()
            compiled[dt] = (
                jax.jit(meta_step.step).lower(params, state, tasks).compile(),
                state,
                time.perf_counter() - t0,
            )
        times: dict[str, list[float]] = {dt: [] for dt in dtypes}
        for dt in dtypes:  # warm-up
            jax.block_until_ready(compiled[dt][0](params, compiled[dt][1], tasks))
        for _ in range(args.repeats):
            for dt in dtypes:
                fn, state, _ = compiled[dt]
                t0 = time.perf_counter()
                jax.block_until_ready(fn(params, state, tasks))
                times[dt].append(time.perf_counter() - t0)
        ref = grads["float32"]
        for dt in dtypes:
            g = grads[dt]
            est = compiled_memory(compiled[dt][0])
            rows.append(
                {
                    "algorithm": alg,
                    "k": k,
                    "compute_dtype": dt,
                    "cosine": float(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref))),
                    "rel_err": float(np.max(np.abs(g - ref)) / np.max(np.abs(ref))),
                    "temp_mb_per_task": None if est is None else est.temp_bytes / args.tasks / 2**20,
                    "s_per_step": statistics.median(times[dt]),
                    "compile_s": compiled[dt][2],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    info = machine()
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, jax {info['jax']} "
        f"({jax.default_backend()}).",
        "",
        f"Conv4-64 5-way 1-shot, 15 queries, inner rate 0.4, conv={args.conv}, {args.tasks} tasks of {data}, vmapped; "
        f"median of {args.repeats} timed calls per variant, the dtypes alternating.",
        "",
        "| algorithm | k | compute | cosine to float32 | max error / max entry | XLA temp MB / task | s / step "
        "| vs float32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(x for x in rows if x["algorithm"] == r["algorithm"] and x["k"] == r["k"])
        temp = "-" if r["temp_mb_per_task"] is None else f"{r['temp_mb_per_task']:.1f}"
        lines.append(
            f"| {r['algorithm']} | {r['k']} | {r['compute_dtype']} | {r['cosine']:.5f} | {r['rel_err']:.1e} | "
            f"{temp} | {r['s_per_step']:.3f} | {r['s_per_step'] / base['s_per_step']:.2f}x |"
        )
    meta = {"machine": info, "data": data, "conv": args.conv, "tasks": args.tasks}
    write_results(
        args.out, "mixed", {**meta, "rows": rows}, "\n".join(lines) + "\n", config=args, data_dir=args.data_dir
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
