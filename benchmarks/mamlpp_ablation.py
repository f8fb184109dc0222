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
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, write_results  # noqa: E402
from mamlpp_equal_time import collect  # noqa: E402


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
    todo = list(table)
    running: list = []
    free = list(range(args.jobs))
    failed = []
    while todo or running:
        while todo and free:
            name = todo.pop(0)
            run_dir = runs / name.replace(" ", "-")
            if (run_dir / "eval_final.json").is_file():
                continue
            core = free.pop(0)
            sets = {
                "seed": args.seed,
                "train.num_steps": args.steps,
                "train.eval_every": max(args.steps // 10, 1),
                "train.val_tasks": args.val_tasks,
                "train.checkpoint_every": max(args.steps // 10, 1),
                "runtime.cpu_threads": 1,
                **common,
                **table[name],
            }
            cmd = ["taskset", "-c", str(core), sys.executable, "-m", "metajax", "train"]
            cmd += ["--config", "omniglot_5w1s_mamlpp", "--run-dir", str(run_dir), "--data-dir", args.data_dir]
            cmd += ["--no-progress"]
            for key, value in sets.items():
                cmd += ["--set", f"{key}={value}"]
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = open(run_dir.with_suffix(".log"), "w")  # noqa: SIM115 - closed with the process
            print(f"start {name} on core {core}", file=sys.stderr, flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), name, core))
        time.sleep(2)
        for item in list(running):
            proc, name, core = item
            if proc.poll() is not None:
                running.remove(item)
                free.append(core)
                print(f"done {name} (exit {proc.returncode})", file=sys.stderr, flush=True)
                if proc.returncode != 0:
                    failed.append(name)
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
    write_results(args.out, "mamlpp-ablation", payload, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
