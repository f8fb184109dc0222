"""Memory of a ResNet-12 meta-step by gradient strategy: XLA's estimates (compile only) and measured CPU peaks.

    python benchmarks/memory_plan.py                       # the estimate grid (compile only)
    python benchmarks/memory_plan.py --measure             # and measured peaks for 1-shot, k = 1 and 5
    python benchmarks/memory_plan.py --planner             # what metajax train's memory planner picks

Workload: ResNet-12 64-160-320-640 (``lax.conv`` convolutions, what GPUs and TPUs run), 84x84x3, 5-way 1- and
5-shot, 15 queries per class, k = 1, 5, 10 inner SGD steps. Strategies: ``exact`` (the unrolled second-order
meta-gradient), ``exact_remat`` (each inner step recomputed in the backward pass), ``exact_remat_dots`` (the
same, keeping the convolutions' and matrix products' outputs), ``first_order`` (FOMAML) and ``implicit`` (iMAML,
5 conjugate-gradient steps). Each cell compiles the meta-step (Adam outer update) for a batch of 1 and of 2 tasks
under ``vmap``: the difference is what one more task costs, the rest is fixed (parameters, optimiser state,
gradients); the largest meta-batch that fits a 16, 40 or 80 GB device follows, with 10 % of the device kept
free. With ``lax.map`` over tasks one at a time (``task_chunk=1``) the peak stays that of one task whatever the
meta-batch. These are XLA:CPU's estimates: an accelerator's compiler fuses differently, so read them as a
guide within tens of percent.

``--measure`` runs the 1-task step of a subset in a subprocess each and reports the process's peak resident memory
while it runs (the peak counter reset after compiling), beside the estimate's temporaries and outputs (the
arguments are resident before the run). Output: ``benchmarks/results/DATE-memory-plan.{json,md}``.

``--planner`` runs the planner of ``metajax train --set runtime.memory_plan=auto``
(``metajax.diagnostics.plan_memory``) on the same workload for a meta-batch of ``--meta-batch`` tasks on a 16, 40
and 80 GB device (90 % of it as the budget) and tabulates its choice (``DATE-memory-planner.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, write_results  # noqa: E402

STRATEGIES = ("exact", "exact_remat", "exact_remat_dots", "first_order", "implicit")
DEVICES_GB = (16, 40, 80)
GB = 1e9


def build(shots: int, k: int, strategy: str, widths: tuple[int, ...], size: int, task_chunk: int | None = None):
    import optax

    import metajax as mj
    from metajax.models import cross_entropy_loss, resnet12

    model = resnet12(5, widths, size, 3, conv="xla")
    loss = cross_entropy_loss(model.apply)
    if strategy == "implicit":
        learner = mj.imaml(loss, "sgd", k, inner_lr=0.01, lam=1.0, cg_steps=5, has_aux=True, task_chunk=task_chunk)
    else:
        learner = mj.maml(loss, "sgd", k, inner_lr=0.01, gradient=strategy, has_aux=True, task_chunk=task_chunk)
    return model, learner, mj.make_meta_step(learner, optax.adam(1e-3))


def abstract_args(model, learner, meta_step, shots: int, tasks: int, size: int):
    import jax
    import jax.numpy as jnp

    import metajax as mj

    params = jax.eval_shape(lambda: learner.init(model.init(jax.random.PRNGKey(0))))
    state = jax.eval_shape(meta_step.init, params)

    def part(n):
        return (
            jax.ShapeDtypeStruct((tasks, 5 * n, size, size, 3), jnp.float32),
            jax.ShapeDtypeStruct((tasks, 5 * n), jnp.int32),
        )

    return params, state, mj.Task(part(shots), part(15))


def estimate_cell(shots: int, k: int, strategy: str, widths, size: int) -> dict:
    import jax

    from metajax.diagnostics import estimate_memory

    model, learner, meta_step = build(shots, k, strategy, widths, size)
    out = {}
    for tasks in (1, 2):
        t = time.perf_counter()
        est = estimate_memory(jax.jit(meta_step.step), *abstract_args(model, learner, meta_step, shots, tasks, size))
        out[tasks] = {
            "peak": est.peak_bytes,
            "arguments": est.argument_bytes,
            "outputs": est.output_bytes,
            "temporaries": est.temp_bytes,
            "compile_s": round(time.perf_counter() - t, 1),
        }
    per_task = out[2]["peak"] - out[1]["peak"]
    fixed = out[1]["peak"] - per_task
    largest = {gb: max(int((0.9 * gb * GB - fixed) // per_task), 0) if per_task > 0 else None for gb in DEVICES_GB}
    return {"tasks": out, "per_task": per_task, "fixed": fixed, "largest_meta_batch": largest}


def plan_cell(shots: int, k: int, meta_batch: int, widths, size: int) -> dict:
    """What the memory planner of ``metajax train`` (runtime.memory_plan=auto) chooses for a 16, 40 and 80 GB
    device (90 % of it as the budget), the meta-batch on one device; estimates shared between the budgets."""
    import jax

    from metajax.diagnostics import REMAT_LADDER, estimate_memory, plan_memory

    cache: dict = {}

    def estimate(gradient, chunk):
        if (gradient, chunk) not in cache:
            task_chunk = None if chunk == meta_batch else chunk
            model, learner, meta_step = build(shots, k, gradient, widths, size, task_chunk)
            args = abstract_args(model, learner, meta_step, shots, meta_batch, size)
            cache[gradient, chunk] = estimate_memory(jax.jit(meta_step.step), *args)
        return cache[gradient, chunk]

    plans = {}
    for gb in DEVICES_GB:
        try:
            p = plan_memory(estimate, REMAT_LADDER, meta_batch, int(0.9 * gb * GB))
            plans[gb] = {"gradient": p.gradient, "chunk": p.chunk, "peak": p.peak_bytes, "compiled": len(p.trials)}
        except MemoryError:
            plans[gb] = None
    return {"plans": plans, "compiled": len(cache)}


def measure_cell(shots: int, k: int, strategy: str, widths, size: int) -> dict:
    """Run the 1-task step once; the peak resident memory while it runs (Linux: VmHWM reset after compiling)."""
    import jax
    import numpy as np

    import metajax as mj
    from metajax.diagnostics import compiled_memory, release_host_memory

    model, learner, meta_step = build(shots, k, strategy, widths, size)
    params = learner.init(model.init(jax.random.PRNGKey(0)))
    state = meta_step.init(params)
    rng = np.random.default_rng(0)

    def part(n):
        x = rng.random((1, 5 * n, size, size, 3), dtype=np.float32)
        return jax.device_put(x), jax.device_put(np.tile(np.repeat(np.arange(5, dtype=np.int32), n), (1, 1)))

    tasks = mj.Task(part(shots), part(15))
    compiled = jax.jit(meta_step.step).lower(params, state, tasks).compile()
    est = compiled_memory(compiled)
    release_host_memory()
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    t = time.perf_counter()
    out = compiled(params, state, tasks)
    jax.block_until_ready(out)
    run_s = time.perf_counter() - t
    peak = _status("VmHWM")
    return {
        "rss_before": before,
        "peak_rss": peak,
        "measured_increase": peak - before,
        "estimate_temporaries_outputs": est.temp_bytes + est.output_bytes,
        "estimate_peak": est.peak_bytes,
        "run_s": round(run_s, 1),
    }


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--widths", type=int, nargs=4, default=[64, 160, 320, 640])
    ap.add_argument("--size", type=int, default=84)
    ap.add_argument("--measure", action="store_true", help="also measured CPU peaks for 1-shot, k = 1 and 5")
    ap.add_argument("--measure-k", type=int, nargs="+", default=[1, 5])
    ap.add_argument(
        "--planner",
        action="store_true",
        help="only what metajax train's memory planner (runtime.memory_plan=auto) picks per device size",
    )
    ap.add_argument("--meta-batch", type=int, default=4, help="tasks per meta-step for --planner (default 4)")
    ap.add_argument("--one", nargs=4, metavar=("MODE", "SHOTS", "K", "STRATEGY"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    widths = tuple(args.widths)
    if args.one:  # a child process: one cell, JSON on stdout
        mode, shots, k, strategy = args.one
        if mode == "plan":
            print(json.dumps(plan_cell(int(shots), int(k), args.meta_batch, widths, args.size)))
            return 0
        fn = estimate_cell if mode == "estimate" else measure_cell
        print(json.dumps(fn(int(shots), int(k), strategy, widths, args.size)))
        return 0

    def child(mode, shots, k, strategy):
        cmd = [sys.executable, __file__, "--one", mode, str(shots), str(k), strategy, "--size", str(args.size)]
        cmd += ["--widths", *map(str, widths), "--meta-batch", str(args.meta_batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} {shots}-shot k={k} {strategy} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        for key in ("tasks", "largest_meta_batch", "plans"):  # JSON made the integer keys strings
            if key in r:
                r[key] = {int(n): v for n, v in r[key].items()}
        return r

    if args.planner:
        return planner_table(args, widths, child)
    rows = []
    for shots in args.shots:
        for k in args.k:
            for strategy in args.strategies:
                r = child("estimate", shots, k, strategy)
                rows.append({"shots": shots, "k": k, "strategy": strategy, **r})
                print(
                    f"{shots}-shot k={k} {strategy}: {r['per_task'] / GB:.2f} GB per task, fixed {r['fixed'] / GB:.2f}"
                    f" GB, compile {r['tasks'][1]['compile_s']} s",
                    file=sys.stderr,
                    flush=True,
                )
    measured = []
    if args.measure:
        for k in args.measure_k:
            for strategy in ("exact", "exact_remat", "first_order"):
                m = child("measure", 1, k, strategy)
                measured.append({"shots": 1, "k": k, "strategy": strategy, **m})
                print(f"measured 1-shot k={k} {strategy}: {m}", file=sys.stderr, flush=True)
    info = machine()
    md = [
        f"ResNet-12 {'-'.join(map(str, widths))} (lax.conv), {args.size}x{args.size}x3, 5-way, 15 queries per class, "
        "inner SGD, Adam outer step; XLA:CPU's memory analysis (compile only), GB = 1e9 bytes.",
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']}.",
        "",
        "| shots | k | strategy | per task (vmap) GB | fixed GB | 1 task peak GB | largest meta-batch on "
        + " / ".join(f"{g} GB" for g in DEVICES_GB)
        + " | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        one = r["tasks"][1]
        largest = " / ".join(str(r["largest_meta_batch"][g]) for g in DEVICES_GB)
        md.append(
            f"| {r['shots']} | {r['k']} | {r['strategy']} | {r['per_task'] / GB:.2f} | {r['fixed'] / GB:.2f} | "
            f"{one['peak'] / GB:.2f} | {largest} | {one['compile_s']:.0f} |"
        )
    if measured:
        md += [
            "",
            "Measured on this CPU, one task per call: the peak resident memory while the compiled step runs, above "
            "the resident memory before it (parameters and tasks already in place), against XLA's temporaries + "
            "outputs.",
            "",
            "| shots | k | strategy | estimate GB | measured GB | measured / estimate | run s |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in measured:
            e, got = m["estimate_temporaries_outputs"], m["measured_increase"]
            md.append(
                f"| {m['shots']} | {m['k']} | {m['strategy']} | {e / GB:.2f} | {got / GB:.2f} | {got / e:.2f} | "
                f"{m['run_s']:.0f} |"
            )
    payload = {"machine": info, "args": vars(args), "estimates": rows, "measured": measured}
    write_results(args.out, "memory-plan", payload, "\n".join(md) + "\n", config=args)
    return 0


def planner_table(args, widths, child) -> int:
    rows = []
    for shots in args.shots:
        for k in args.k:
            r = child("plan", shots, k, "-")
            rows.append({"shots": shots, "k": k, **r})
            print(f"planner {shots}-shot k={k}: {r}", file=sys.stderr, flush=True)
    info = machine()
    md = [
        f"What `metajax train --set runtime.memory_plan=auto` chooses for ResNet-12 {'-'.join(map(str, widths))} "
        f"(lax.conv), {args.size}x{args.size}x3, 5-way, 15 queries per class, inner SGD, Adam outer step, "
        f"meta-batch {args.meta_batch} on one device, budget 90 % of the device; XLA:CPU's estimates, GB = 1e9 "
        "bytes. Cell: gradient strategy, tasks per lax.map chunk (all = vmapped), estimated peak.",
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']}.",
        "",
        "| shots | k | " + " | ".join(f"{g} GB device" for g in DEVICES_GB) + " | programs compiled |",
        "|---|---|" + "---|" * len(DEVICES_GB) + "---|",
    ]
    for r in rows:
        cells = []
        for g in DEVICES_GB:
            p = r["plans"][g]
            if p is None:
                cells.append("does not fit")
            else:
                chunk = "all" if p["chunk"] == args.meta_batch else str(p["chunk"])
                cells.append(f"{p['gradient']}, {chunk}, {p['peak'] / GB:.1f} GB")
        md.append(f"| {r['shots']} | {r['k']} | " + " | ".join(cells) + f" | {r['compiled']} |")
    payload = {"machine": info, "args": vars(args), "planner": rows}
    write_results(args.out, "memory-planner", payload, "\n".join(md) + "\n", config=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
