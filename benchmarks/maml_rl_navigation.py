"""MAML-TRPO on 2D navigation (Finn et al. 2017, section 5.3): the test protocol's returns after meta-training.

    python benchmarks/maml_rl_navigation.py --steps 500 --seeds 0 1 2
    python benchmarks/maml_rl_navigation.py --configs navigation2d_maml_trpo navigation2d_maml_trpo_clipped \
        navigation2d_fomaml navigation2d_meta_sgd --steps 500 --seeds 0 1 2

For each config and seed, ``metajax train --config CONFIG --set seed=S --set train.num_steps=STEPS`` (the run
directory under ``--runs``; a finished run is not run again), then the config's evaluation: 40 test goals, 40
trajectories per inner step, the mean return after 0, 1, 2 and 3 inner steps (alpha, then alpha/2) with its 95 %
interval over the goals, and a random initialisation adapted the same way. Output:
``benchmarks/results/DATE-maml-rl-navigation.{json,md}``: per run the table, the action convention, the training
wall time and seconds per meta-iteration; per config the mean over seeds of each step's mean return with a 95 %
interval over seeds (when there are several). The MAML paper's Figure 5 (normalised actions, 500 iterations):
about -40 before adaptation, -12 after one step, about -3 after two or three; a random initialisation about -83
before and -47 after three steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, write_results  # noqa: E402

PAPER = {"maml": [-40.0, -12.0, -3.0, -3.0], "random": [-83.0, None, None, -47.0]}


def train(config: str, seed: int, steps: int, run_dir: Path, sets: list[str]) -> dict:
    """Train and evaluate one run (skipped when ``run_dir`` already holds its summary); its results."""
    if not (run_dir / "summary.json").is_file():
        cmd = [sys.executable, "-m", "metajax", "train", "--config", config, "--run-dir", str(run_dir), "--no-progress"]
        cmd += ["--set", f"seed={seed}", "--set", f"train.num_steps={steps}"]
        cmd += [a for s in sets for a in ("--set", s)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    ev = json.loads((run_dir / "eval.json").read_text())
    config_json = json.loads((run_dir / "config.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seconds = [1.0 / r["it_per_s"] for r in records[1:]] or [1.0 / records[0]["it_per_s"]]
    return {
        "config": config,
        "seed": seed,
        "steps": summary["steps"],
        "actions": ev["actions"],
        "estimator": config_json["inner"]["estimator"],
        "inner_lr": config_json["inner"]["lr"],
        "train_wall_s": summary["train_wall_s"],
        "s_per_meta_iteration": float(np.median(seconds)),
        "eval": ev,
        "table": (run_dir / "eval.md").read_text(),
    }


def over_seeds(runs: list[dict]) -> dict:
    """Per initialisation and inner-step count, the mean over seeds of the test mean return (± 95 % over seeds)."""
    out = {}
    for name in runs[0]["eval"]["results"]:
        means = np.array([[r["mean"] for r in run["eval"]["results"][name]] for run in runs])
        ci = 1.96 * means.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.full(means.shape[1], np.nan)
        out[name] = {"mean": means.mean(axis=0).tolist(), "ci95_over_seeds": ci.tolist(), "seeds": len(runs)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["navigation2d_maml_trpo"])
    ap.add_argument("--steps", type=int, default=500, help="meta-iterations of each run (500 in the references)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--runs", default="runs/maml_rl_navigation", help="where the run directories go")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    args = ap.parse_args(argv)
    results = {}
    for config in args.configs:
        runs = [
            train(config, seed, args.steps, Path(args.runs) / f"{config}-s{seed}-n{args.steps}", args.set)
            for seed in args.seeds
        ]
        results[config] = {"runs": runs, "over_seeds": over_seeds(runs)}
    lines = [
        f"# MAML for RL on 2D navigation: {args.steps} meta-iterations, seeds {args.seeds}",
        "",
        "Test protocol: 40 goals, 40 trajectories per inner step, mean return after n inner steps (alpha then "
        "alpha/2), ± 95 % interval over the goals; the paper's Figure 5 (normalised actions, 500 iterations): "
        "about -40 / -12 / -3 / -3 after 0 / 1 / 2 / 3 steps, a random init about -83 before and -47 after three.",
        "",
    ]
    for config, res in results.items():
        for run in res["runs"]:
            lines += [
                f"## {config}, seed {run['seed']} ({run['actions']} actions, estimator {run['estimator']}, inner step "
                f"{run['inner_lr']}, {run['steps']} meta-iterations, "
                f"{run['s_per_meta_iteration']:.1f} s per meta-iteration, {run['train_wall_s']:.0f} s training)",
                "",
                run["table"],
            ]
        if len(res["runs"]) > 1:
            lines += [f"## {config}: mean over {len(res['runs'])} seeds", ""]
            for name, agg in res["over_seeds"].items():
                cells = ", ".join(
                    f"{m:.2f} ± {c:.2f}" for m, c in zip(agg["mean"], agg["ci95_over_seeds"], strict=True)
                )
                lines.append(f"- {name}: {cells}")
            lines.append("")
    payload = {
        "benchmark": "maml_rl_navigation",
        "argv": sys.argv[1:] if argv is None else argv,
        "steps": args.steps,
        "seeds": args.seeds,
        "paper_figure5": PAPER,
        "machine": machine(),
        "results": results,
    }
    write_results(args.out, "maml-rl-navigation", payload, "\n".join(lines) + "\n", config=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
