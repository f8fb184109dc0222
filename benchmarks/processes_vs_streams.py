"""CPU task streams in one process against one JAX process per core (jax.distributed on localhost).

    python benchmarks/processes_vs_streams.py                  # MAML and FOMAML k=1, 2 rounds (~6 min on 2 cores)
    python benchmarks/processes_vs_streams.py --algorithms reptile --k 5

The sharded Omniglot meta-step of ``python benchmarks/run.py --only omniglot`` (meta-batch 32),
run two ways, alternating within each round:
  streams    one process, the CPU split into one XLA device per core (``metajax train``'s default,
             ``runtime.cpu_streams=0``), tasks sharded over the devices;
  processes  one process per core, each pinned to its core with one CPU device, started with
             ``jax.distributed`` on localhost (the multi-host path of ``runtime.distributed=True``),
             the same mesh and sharding over the processes' devices; the meta-gradient's all-reduce
             goes through JAX's CPU collectives.
Both compute the same step (the printed checksums of the parameters after six Adam steps agree to
~1e-4 relative; the all-reduce sums in another order). Median of
``--repeats`` calls after a warm-up call; compile time is each variant's lower + compile.
Writes ``benchmarks/results/<timestamp>-processes.{json,md}``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time

import _pinned


def child(mode: str, algorithm: str, k: int, repeats: int, rank: int, size: int, port: int) -> None:
    import jax

    if mode == "processes":
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[rank]})
        jax.distributed.initialize(f"localhost:{port}", size, rank)
    else:
        jax.config.update("jax_num_cpu_devices", size)
    import numpy as np
    from harness import omniglot_workload

    import metajax as mj

    mesh = mj.parallel.make_mesh(size)
    spec = {"algorithm": algorithm, "k": k, "conv": "auto", "task_chunk": 1, "meta_batch": 32}
    ms, params, tasks = omniglot_workload(spec, None, mesh)
    args = (*mj.parallel.replicate((params, ms.init(params)), mesh), mj.parallel.shard_tasks(tasks, mesh))
    t0 = time.perf_counter()
    step = jax.jit(ms.step).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = step(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = step(out[0], out[1], args[2])
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
    leaves = jax.tree_util.tree_leaves(out[0])
    check = float(sum(np.abs(np.asarray(leaf.addressable_data(0))).sum() for leaf in leaves))
    print("RESULT " + json.dumps({"times": times, "compile_s": compile_s, "check": check}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(mode: str, algorithm: str, args) -> dict:
    size = 2
    port = _free_port()
    ranks = range(size) if mode == "processes" else range(1)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps([mode, algorithm, args.k, args.repeats, r, size, port])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ranks
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"{mode} child failed (exit {p.returncode}):\n{err[-3000:]}")
        results.append(_pinned.child_result(out))
    return {
        "mode": mode,
        "algorithm": algorithm,
        "k": args.k,
        "s_per_it": max(statistics.median(r["times"]) for r in results),  # the step ends when every process ends
        "compile_s": max(r["compile_s"] for r in results),
        "check": results[0]["check"],
    }


def main(argv: list[str] | None = None) -> int:
    args = _pinned.parser(__doc__).parse_args(argv)
    if args.child:
        child(*json.loads(args.child))
        return 0
    _pinned.check(args, ("k", "repeats", "rounds"), "processes_vs_streams.py")
    from harness import machine

    info = machine()
    rows = []
    for rnd in range(args.rounds):
        for alg in args.algorithms:
            for mode in ("streams", "processes"):
                r = {"round": rnd + 1, **run(mode, alg, args)}
                rows.append(r)
                print(
                    f"round {r['round']} {alg} k={args.k} {mode}: {r['s_per_it']:.3f} s/it, compile "
                    f"{r['compile_s']:.1f} s, check {r['check']:.6g}",
                    file=sys.stderr,
                    flush=True,
                )
    cells = []
    for st, pr in zip(rows[0::2], rows[1::2], strict=True):
        cells.append(
            [str(st["round"]), st["algorithm"], str(st["k"]), f"{st['s_per_it']:.3f}", f"{pr['s_per_it']:.3f}"]
        )
        cells[-1] += [f"{pr['s_per_it'] / st['s_per_it']:.2f}", f"{st['compile_s']:.1f} / {pr['compile_s']:.1f}"]
    _pinned.write(
        args.out,
        "processes",
        {"machine": info, "rows": rows},
        f"Machine: {info['cpu']}, {info['cores']} cores; jax {info['jax']}. Omniglot meta-step, meta-batch 32, "
        f"2 devices; median of {args.repeats} calls.",
        [
            "round",
            "algorithm",
            "k",
            "streams s/it",
            "processes s/it",
            "processes / streams",
            "compile s (streams / proc.)",
        ],
        cells,
        config=args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
