"""Meta-training from a supervised pre-trained backbone against from scratch, at the same number of meta-steps.

    python benchmarks/pretrain_init.py --data-dir DIR --steps 500 --pretrain-steps 3000 --jobs 2

``metajax pretrain --config CONFIG`` (default ``omniglot_5w1s_maml``: Conv4-64 over the 4,400 training classes)
then, for each seed, ``metajax train --config CONFIG`` from scratch and with ``--init`` the pre-training run, the
same ``--steps`` meta-steps each (validation and checkpoints every tenth), one core per process. The pre-training
runs beside the first scratch run. Output: ``benchmarks/results/DATE-pretrain-init.{json,md,png}``: accuracy ± 95 %
CI on 600 test tasks per batch-norm policy, training wall times, the pre-training's summary and the validation
curves; run directories under ``--runs`` (a run already finished is not run again).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, write_results  # noqa: E402
from mamlpp_equal_time import collect, plot_curves, run_on_cores  # noqa: E402


def train_command(args: argparse.Namespace, seed: int, run_dir: Path, init: Path | None) -> list[str]:
    every = max(args.steps // 10, 1)
    sets = {
        "seed": seed,
        "train.num_steps": args.steps,
        "train.eval_every": every,
        "train.val_tasks": args.val_tasks,
        "train.checkpoint_every": every,
        "runtime.cpu_threads": 1,
    }
    cmd = [sys.executable, "-m", "metajax", "train", "--config", args.config, "--run-dir", str(run_dir)]
    cmd += ["--data-dir", args.data_dir, "--no-progress"] + (["--init", str(init)] if init else [])
    return cmd + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")] + extra_sets(args)


def extra_sets(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides given to this benchmark, passed to the pre-training and every training run."""
    return [a for s in args.set or [] for a in ("--set", s)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--config", default="omniglot_5w1s_maml")
    ap.add_argument("--steps", type=int, default=500, help="meta-steps of each meta-training run")
    ap.add_argument("--pretrain-steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--val-tasks", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1, help="processes side by side, one core each")
    ap.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="config override for the pre-training and every run, e.g. --set 'model.widths=(16,32,64,128)'",
    )
    ap.add_argument("--runs", default="runs/pretrain-init")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    pre = runs / "pretrain"
    jobs = []
    if not (pre / "summary.json").is_file():
        cmd = [sys.executable, "-m", "metajax", "pretrain", "--config", args.config, "--run-dir", str(pre)]
        cmd += ["--data-dir", args.data_dir, "--no-progress", "--set", f"pretrain.steps={args.pretrain_steps}"]
        cmd += ["--set", f"train.val_tasks={args.val_tasks}", "--set", "runtime.cpu_threads=1", *extra_sets(args)]
        jobs.append(("pretrain", pre, cmd))
    scratch = [(f"scratch seed {s}", runs / f"scratch-seed{s}", s) for s in args.seeds]
    init = [(f"pretrained seed {s}", runs / f"pretrained-seed{s}", s) for s in args.seeds]
    # the pre-training first, then each pre-trained run as soon as it is done and a core is free
    after = ("pretrain",) if jobs else ()
    for (name, d, s), (iname, idir, _) in zip(scratch, init, strict=True):
        jobs.append((name, d, train_command(args, s, d, None)))
        jobs.append((iname, idir, train_command(args, s, idir, pre), *after))
    failed = run_on_cores(jobs, args.jobs)
    if failed:
        print(f"failed: {failed}; see the .log files under {runs}", file=sys.stderr)
        return 1
    pre_summary = json.loads((pre / "summary.json").read_text())
    pre_curve = [
        (r["step"], r["val_accuracy"])
        for r in map(json.loads, (pre / "metrics.jsonl").read_text().splitlines())
        if "val_accuracy" in r
    ]
    results = {
        kind: {s: collect(d) for _, d, s in group} for kind, group in (("scratch", scratch), ("pretrained", init))
    }
    policies = list(results["scratch"][args.seeds[0]]["eval"])
    info = machine()
    md = [
        f"`{args.config}`{' with ' + ', '.join(args.set) if args.set else ''} from scratch and from a pre-trained "
        f"backbone, {args.steps} meta-steps each; one core per run; 600 test tasks, 15 queries per class; "
        "accuracy % (95 % CI).",
        f"Pre-training: {pre_summary['classes']} classes, {pre_summary['steps']} steps, "
        f"{pre_summary['train_wall_s']:.0f} s; backbone from step {pre_summary['backbone_step']} (validation "
        f"accuracy of the {pre_summary['validation']}: {100 * (pre_summary['best_val_accuracy'] or 0):.2f} %).",
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']}.",
        "",
        "| init | seed | train wall s | first validation % | " + " | ".join(policies) + " |",
        "|---|---|---|---|" + "---|" * len(policies),
    ]
    for kind, by_seed in results.items():
        for seed, r in by_seed.items():
            cells = [f"{100 * r['eval'][p]['accuracy']:.2f} ± {100 * r['eval'][p]['ci95']:.2f}" for p in policies]
            first_val = f"{100 * r['curve'][0][2]:.1f} (step {r['curve'][0][0]})" if r["curve"] else "-"
            md.append(f"| {kind} | {seed} | {r['train_wall_s']:.0f} | {first_val} | " + " | ".join(cells) + " |")
    payload = {
        "machine": info,
        "args": vars(args),
        "pretrain": {**pre_summary, "val_curve": pre_curve},
        "results": results,
    }
    stamp = write_results(args.out, "pretrain-init", payload, "\n".join(md) + "\n", config=args, data_dir=args.data_dir)
    plot_curves(
        Path(args.out) / f"{stamp}-pretrain-init.png",
        {kind: (color, results[kind]) for kind, color in (("scratch", "tab:blue"), ("pretrained", "tab:green"))},
        "step",
        "meta-step",
        f"{args.config}: from scratch and from a pre-trained backbone",
        markers=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
