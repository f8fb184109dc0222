"""Seconds per MAML-TRPO meta-iteration on 2D navigation, its FLOPs and the FLOP/s reached, side by side.

    python benchmarks/maml_rl_speed.py                                  # 10 / 20 / 40 tasks, both KL products
    python benchmarks/maml_rl_speed.py --tasks 20 --repeats 5
    python benchmarks/maml_rl_speed.py --torch-python /path/to/venv/bin/python --torch-repo /path/to/pytorch-maml-rl

The workload is pytorch-maml-rl's 2D-navigation config: a 64x64 tanh Gaussian policy, 20 trajectories of 100 steps
per task, one inner policy-gradient step, the linear baseline with GAE(0.99, 1.0), TRPO with max KL 0.01, 10
conjugate-gradient iterations (damping 1e-5) and up to 15 line-search steps at 0.8; ``--tasks`` sets the tasks per
meta-iteration. Each variant is one compiled ``metajax.rl.maml_trpo_step``: ``gauss_newton`` (the default KL
product, ``metajax.rl.gauss_newton_kl_hvp``) and ``forward_over_reverse`` (``jax.jvp`` of ``jax.grad`` of the KL,
the references' double backward). Every meta-iteration draws new tasks and trajectories; the parameters stay at
the initialisation so that every repeat does the same work (one accepted line-search point). Reported: compile
time, the median wall time over ``--repeats`` meta-iterations (after one warm-up), the FLOPs of one
meta-iteration and the GFLOP/s reached.

FLOPs: XLA's cost analysis counts a loop's body once. The step is lowered with its ``lax.scan`` loops (rollouts,
the inner step) unrolled, and the ``while_loop`` iterations counted once there are added: ``cg_iters - 1`` more KL
products and one line-search point (loss and KL) for each further point the step evaluated, each the marginal cost
of one more (lowering two minus lowering one). Elementwise work counts one FLOP per element, as XLA counts it.

With ``--torch-python`` and ``--torch-repo`` the same run also times pytorch-maml-rl's own training loop at the same
sizes (``benchmarks/pytorch_maml_rl_worker.py``, run by that interpreter; its docstring says how to set it up), so
the ratio comes from one machine in one run. Output: ``benchmarks/results/DATE-maml-rl-speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_check import _unrolled_scans as unrolled_scans  # noqa: E402
from harness import machine, write_results  # noqa: E402

KL_PRODUCTS = ("gauss_newton", "forward_over_reverse")
TRPO = {"max_kl": 0.01, "cg_iters": 10, "cg_damping": 1e-5, "ls_max_steps": 15, "ls_backtrack_ratio": 0.8}


def lowered_flops(fn, *args) -> float:
    import jax

    cost = jax.jit(fn).lower(*args).cost_analysis()
    if isinstance(cost, list):
        cost = cost[0]
    return float(cost["flops"])


def problem(num_tasks: int, trajectories: int, horizon: int, hidden: tuple[int, ...], actions: str):
    import jax

    from metajax import rl

    env = rl.navigation2d(actions, horizon=horizon)
    policy = rl.gaussian_mlp(2, hidden)
    meta = rl.maml_rl(env, policy, 1, inner_lr=0.1, estimator="reinforce", num_trajectories=trajectories)
    params = policy.init(jax.random.PRNGKey(0), env.obs_dim)
    return env, meta, params


def count_flops(env, meta, params, num_tasks: int, how: str, ls_points: float) -> dict[str, float]:
    """FLOPs of one meta-iteration: the whole step lowered with its scans unrolled (conjugate gradient's and the
    line search's ``while_loop`` bodies counted once by XLA), plus the loops' other iterations, each the marginal
    cost of one more KL product or line-search point (the difference between lowering two and one)."""
    import jax
    import jax.numpy as jnp

    from metajax import rl

    tasks = env.sample_tasks(jax.random.PRNGKey(1), num_tasks)
    key = jax.random.PRNGKey(2)
    with unrolled_scans():
        step = lowered_flops(lambda p, t, k: rl.maml_trpo_step(meta, p, t, k, kl_hvp=how, **TRPO), params, tasks, key)
        samples = jax.eval_shape(jax.vmap(meta.sample, (None, 0, 0)), params, tasks, jax.random.split(key, num_tasks))

        def products(p, t, s, vs):
            if how == "gauss_newton":
                hvp = rl.gauss_newton_kl_hvp(meta, p, t, s)[1]
            else:
                old = jax.vmap(meta.query_dists, (None, 0, 0))(p, t, s)

                def kl(q):
                    return jnp.mean(jax.vmap(meta.kl, (None, 0, 0, 0))(q, old, t, s))

                def hvp(v):
                    return jax.jvp(jax.grad(kl), (p,), (v,))[1]

            return [hvp(v) for v in vs]

        def points(p, t, s, qs):
            old = jax.vmap(meta.query_dists, (None, 0, 0))(p, t, s)
            return [
                (
                    jnp.mean(jax.vmap(meta.surrogate, (None, 0, 0))(q, t, s)),
                    jnp.mean(jax.vmap(meta.kl, (None, 0, 0, 0))(q, old, t, s)),
                )
                for q in qs
            ]

        product = lowered_flops(products, params, tasks, samples, [params, params]) - lowered_flops(
            products, params, tasks, samples, [params]
        )
        point = lowered_flops(points, params, tasks, samples, [params, params]) - lowered_flops(
            points, params, tasks, samples, [params]
        )
    total = step + (TRPO["cg_iters"] - 1) * product + (ls_points - 1) * point
    return {"step_loops_once": step, "kl_product": product, "line_search_point": point, "total": total}


def time_variant(env, meta, params, num_tasks: int, how: str, repeats: int) -> dict:
    import jax

    from metajax import rl

    step = jax.jit(lambda p, t, k: rl.maml_trpo_step(meta, p, t, k, kl_hvp=how, **TRPO))

    def args(i):
        key = jax.random.PRNGKey(1000 + i)
        return params, env.sample_tasks(jax.random.fold_in(key, 0), num_tasks), jax.random.fold_in(key, 1)

    t = time.perf_counter()
    compiled = step.lower(*args(0)).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(*args(0)))  # warm-up
    times, backtracks = [], []
    for i in range(repeats):
        a = args(i + 1)
        t = time.perf_counter()
        _, metrics = jax.block_until_ready(compiled(*a))
        times.append(time.perf_counter() - t)
        backtracks.append(int(metrics.trpo.backtracks) + (1 if bool(metrics.trpo.accepted) else 0))
    return {
        "compile_s": compile_s,
        "times_s": times,
        "s_per_iteration": statistics.median(times),
        "ls_points": backtracks,
    }


def torch_reference(python: str, repo: str, num_tasks: int, iterations: int, workers: int, threads: int) -> dict:
    worker = Path(__file__).resolve().parent / "pytorch_maml_rl_worker.py"
    cmd = [python, str(worker), "--repo", repo, "--meta-batch-size", str(num_tasks), "--iterations", str(iterations)]
    cmd += ["--num-workers", str(workers), "--torch-threads", str(threads)]
    print(" ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[10, 20, 40], help="tasks per meta-iteration")
    ap.add_argument("--trajectories", type=int, default=20, help="trajectories per task and inner step")
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--actions", choices=("normalized", "clipped"), default="clipped")
    ap.add_argument("--variants", nargs="+", choices=KL_PRODUCTS, default=list(KL_PRODUCTS))
    ap.add_argument("--repeats", type=int, default=5, help="timed meta-iterations per variant (median)")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP count (lowering unrolled: ~1 min)")
    ap.add_argument("--torch-python", help="the interpreter of a venv with pytorch-maml-rl's requirements")
    ap.add_argument("--torch-repo", help="a pytorch-maml-rl checkout")
    ap.add_argument("--torch-iterations", type=int, default=5)
    ap.add_argument("--torch-workers", type=int, default=2, help="pytorch-maml-rl's sampler processes")
    ap.add_argument("--torch-threads", type=int, nargs="+", default=[1], help="torch threads per process (each)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    if bool(args.torch_python) != bool(args.torch_repo):
        ap.error("--torch-python and --torch-repo go together")
    import jax

    rows = []
    for n in args.tasks:
        env, meta, params = problem(n, args.trajectories, args.horizon, tuple(args.hidden), args.actions)
        for how in args.variants:
            print(f"metajax, {n} tasks, {how} ...", flush=True)
            row = {
                "impl": "metajax",
                "tasks": n,
                "kl_product": how,
                **time_variant(env, meta, params, n, how, args.repeats),
            }
            if not args.no_flops:
                parts = count_flops(env, meta, params, n, how, statistics.median(row["ls_points"]))
                row.update(
                    flops_parts=parts, flops=parts["total"], gflops_per_s=parts["total"] / row["s_per_iteration"] / 1e9
                )
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "times_s"}), flush=True)
        if args.torch_python:
            for threads in args.torch_threads:
                ref = torch_reference(
                    args.torch_python, args.torch_repo, n, args.torch_iterations, args.torch_workers, threads
                )
                rows.append({"impl": "pytorch-maml-rl", "tasks": n, "kl_product": f"{threads} thread(s)", **ref})
    md = table(rows, args, jax.devices()[0].device_kind)
    write_results(args.out, "maml-rl-speed", {"args": vars(args), "machine": machine(), "rows": rows}, md)
    return 0


def table(rows: list[dict], args, device: str) -> str:
    m = machine()
    lines = [
        f"# MAML-TRPO meta-iteration speed, 2D navigation ({args.trajectories} trajectories x {args.horizon} steps "
        f"per task, policy {'x'.join(map(str, args.hidden))})",
        "",
        f"Machine: {m.get('cpu')} ({m.get('cores')} cores), device {device}. Median of {args.repeats} meta-iterations "
        "after one warm-up; every iteration draws new tasks and trajectories.",
        "",
        "| implementation | tasks | variant (KL product / torch threads) | compile s | s / meta-iteration | "
        "GFLOP / iteration | GFLOP/s | "
        "vs pytorch-maml-rl |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ref = {}  # per task count, the faster of the reference's thread settings
    for r in rows:
        if r["impl"] == "pytorch-maml-rl":
            ref[r["tasks"]] = min(ref.get(r["tasks"], float("inf")), r["s_per_iteration"])
    for r in rows:
        flops = "-" if r.get("flops") is None else f"{r['flops'] / 1e9:.1f}"
        rate = "-" if r.get("gflops_per_s") is None else f"{r['gflops_per_s']:.1f}"
        speedup = "-" if r["tasks"] not in ref else f"{ref[r['tasks']] / r['s_per_iteration']:.1f}x"
        compile_s = "-" if r.get("compile_s") is None else f"{r['compile_s']:.1f}"
        lines.append(
            f"| {r['impl']} | {r['tasks']} | {r.get('kl_product', '-')} | {compile_s} | {r['s_per_iteration']:.3f} | "
            f"{flops} | {rate} | {speedup} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
