"""MAML++ ablation on Omniglot 5-way 1-shot: one seed, each technique switched off in turn.

    python benchmarks/mamlpp_ablation.py --data-dir DIR --steps 200 --jobs 2

Variants of ``omniglot_5w1s_mamlpp`` (the same number of meta-steps each; the multi-step loss anneals over the
first tenth, as in :mod:`mamlpp_equal_time`): ``full``; ``no BNWB`` (batch-norm weights shared by the steps);
``no BNRS`` (running statistics shared by the steps); ``no LSLR`` (the fixed inner rate 0.1); ``no MSL`` (the last
step's query loss only); ``no CA`` (a constant outer rate); ``with DA`` (first order for the first half). Output:
``benchmarks/results/DATE-mamlpp-ablation.{json,md}`` with accuracy ± 95 % CI on 600 test tasks per batch-norm
policy and each run's training wall time; run directories under ``--runs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, write_results  # noqa: E402
from mamlpp_equal_time import collect, run_on_cores  # noqa: E402


def variants(steps: int) -> dict[str, dict]:
    tenth = max(steps // 10, 1)
    return {
        "full": {},
        "no BNWB": {"model.per_step_bn": False},
        "no BNRS": {"model.per_step_stats": False},
        "no LSLR": {"inner.lslr": False},
        "no MSL": {"inner.msl_anneal_steps": None},
        "no CA": {"outer.schedule": "constant"},
        "with DA": {"inner.first_order_steps": steps // 2},
    } | {"_common": {"inner.msl_anneal_steps": tenth}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-tasks", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--runs", default="runs/mamlpp-ablation")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    table = variants(args.steps)
    common = table.pop("_common")
    runs = Path(args.runs)
    jobs = []
    for name, overrides in table.items():
        sets = {
            "seed": args.seed,
            "train.num_steps": args.steps,
            "train.eval_every": max(args.steps // 10, 1),
            "train.val_tasks": args.val_tasks,
            "train.checkpoint_every": max(args.steps // 10, 1),
            "runtime.cpu_threads": 1,
            **common,
            **overrides,
        }
        run_dir = runs / name.replace(" ", "-")
        cmd = [sys.executable, "-m", "metajax", "train", "--config", "omniglot_5w1s_mamlpp", "--run-dir", str(run_dir)]
        cmd += ["--data-dir", args.data_dir, "--no-progress"]
        for key, value in sets.items():
            cmd += ["--set", f"{key}={value}"]
        jobs.append((name, run_dir, cmd))
    failed = run_on_cores(jobs, args.jobs)
    if failed:
        print(f"failed: {failed}; see the .log files under {runs}", file=sys.stderr)
        return 1
    results = {name: collect(runs / name.replace(" ", "-")) for name in table}
    policies = list(results["full"]["eval"])
    info = machine()
    md = [
        f"MAML++ ablation, Omniglot 5-way 1-shot, seed {args.seed}, {args.steps} meta-steps each (one core per run); "
        "600 test tasks, 15 queries per class; accuracy % (95 % CI).",
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']}.",
        "",
        "| variant | train wall s | " + " | ".join(policies) + " |",
        "|---|---|" + "---|" * len(policies),
    ]
    for name, r in results.items():
        cells = [f"{100 * r['eval'][p]['accuracy']:.2f} ± {100 * r['eval'][p]['ci95']:.2f}" for p in policies]
        md.append(f"| {name} | {r['train_wall_s']:.0f} | " + " | ".join(cells) + " |")
    payload = {"machine": info, "args": vars(args), "variants": table, "results": results}
    write_results(args.out, "mamlpp-ablation", payload, "\n".join(md) + "\n", config=args, data_dir=args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
