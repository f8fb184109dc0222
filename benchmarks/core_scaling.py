"""Is the Omniglot meta-step limited per core, or by what the cores share (memory bandwidth, cache)?

    python benchmarks/core_scaling.py                 # MAML and FOMAML k=1, 2 rounds (~4 min on 2 cores)
    python benchmarks/core_scaling.py --algorithms reptile --k 5 --rounds 3

For each algorithm: the compiled meta-step of ``python benchmarks/run.py --only omniglot`` on
half the meta-batch (16 of 32 tasks, one CPU task stream's share), in one process pinned to one
core, timed (a) alone and (b) while an identical process pinned to another core runs the same
step at the same time (both start timing together). If (b) is no slower than (a), two cores
scale perfectly on this work and what limits a step is each core's own speed on XLA:CPU's code,
not memory bandwidth or shared cache. Each row is the median of ``--repeats`` calls; rounds
alternate so drift shows as spread between rounds. Linux only (``os.sched_setaffinity``).
Writes ``benchmarks/results/<timestamp>-cores.{json,md}``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _pinned


def child(algorithm: str, k: int, tasks: int, repeats: int, core: int, go: str) -> None:
    os.sched_setaffinity(0, {core})
    import jax
    from harness import omniglot_workload

    spec = {"algorithm": algorithm, "k": k, "conv": "auto", "task_chunk": 1, "meta_batch": tasks}
    ms, params, tasks_ = omniglot_workload(spec)
    state = ms.init(params)
    step = jax.jit(ms.step).lower(params, state, tasks_).compile()
    jax.block_until_ready(step(params, state, tasks_))  # warm-up
    print("READY", flush=True)
    while not os.path.exists(go):  # start timing together with the other process
        time.sleep(0.01)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(step(params, state, tasks_))
        times.append(time.perf_counter() - t)
    print("RESULT " + json.dumps(times), flush=True)


def run(cores: list[int], args, algorithm: str) -> list[float]:
    """Start one child per core, release them together, return each one's median step time."""
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps([algorithm, args.k, args.tasks, args.repeats, c, go])],
                stdout=subprocess.PIPE,
                text=True,
            )
            for c in cores
        ]
        for p in procs:  # every child compiled and warmed up
            for line in p.stdout:
                if line.startswith("READY"):
                    break
        Path(go).touch()
        medians = []
        for p in procs:
            out, _ = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise SystemExit(f"child on core {cores[procs.index(p)]} failed (exit {p.returncode})")
            times = _pinned.child_result(out)
            medians.append(statistics.median(times))
        return medians


def main(argv: list[str] | None = None) -> int:
    parser = _pinned.parser(__doc__)
    parser.add_argument("--tasks", type=int, default=16, help="tasks per process (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.child:
        child(*json.loads(args.child))
        return 0
    cores = _pinned.check(args, ("k", "tasks", "repeats", "rounds"), "core_scaling.py")
    from harness import machine

    info = machine()
    rows = []
    for rnd in range(args.rounds):
        for alg in args.algorithms:
            alone = run(cores[:1], args, alg)[0]
            together = run(cores[:2], args, alg)
            rows.append({"round": rnd + 1, "algorithm": alg, "k": args.k, "alone_s": alone, "together_s": together})
            print(
                f"round {rnd + 1} {alg} k={args.k}, {args.tasks} tasks: alone {alone:.3f} s, "
                f"two at once {together[0]:.3f} / {together[1]:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    cells = []
    for r in rows:
        t0, t1 = r["together_s"]
        slow = max(t0, t1) / r["alone_s"]
        cells.append([str(r["round"]), r["algorithm"], str(r["k"]), f"{r['alone_s']:.3f}", f"{t0:.3f} / {t1:.3f}"])
        cells[-1].append(f"{slow:.2f}×")
    _pinned.write(
        args.out,
        "cores",
        {"machine": info, "tasks": args.tasks, "rows": rows},
        f"Machine: {info['cpu']}, {info['cores']} cores; jax {info['jax']}. Meta-step on {args.tasks} tasks, one "
        f"process pinned per core; median of {args.repeats} calls.",
        ["round", "algorithm", "k", "alone s/it", "two at once s/it (core 0 / core 1)", "slowdown"],
        cells,
        config=args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
