"""MAML against MAML++ on Omniglot 5-way 1-shot at equal training wall-clock time, several seeds.

    python benchmarks/mamlpp_equal_time.py --data-dir DIR --maml-steps 1500 --mamlpp-steps 1000
    python benchmarks/mamlpp_equal_time.py --data-dir DIR ... --jobs 2 --seeds 0 1 2

MAML++ does more work per meta-step than MAML (five inner steps of eight tasks against one step of 32), so the fair
comparison gives both the same training time, not the same number of steps: pick ``--maml-steps`` and
``--mamlpp-steps`` from their measured rates (the table reports each run's training wall time, so the budget is
checked, not assumed). Each run is ``metajax train`` with the shipped config (``omniglot_5w1s_maml``,
``omniglot_5w1s_mamlpp``) and only these overrides: the seed, the number of meta-steps (MAML++'s cosine schedule
and multi-step-loss annealing are scaled to it: the loss anneals over the first tenth, as 10 of the reference
code's 100 epochs), validation every tenth of the run on ``--val-tasks`` tasks, and one CPU core per run
(``--jobs`` runs side by side). Evaluation: 600 test tasks, 15 queries per class, with the config's batch-norm
policies. Output: ``benchmarks/results/DATE-mamlpp-equal-time.{json,md,png}`` (accuracy with 95 % CI per run and
the mean over seeds, training wall time, the spread of the validation curves across seeds) and the run
directories under ``--runs``.
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

from harness import machine, write_results  # noqa: E402

CONFIGS = {"maml": "omniglot_5w1s_maml", "mamlpp": "omniglot_5w1s_mamlpp"}


def command(algo: str, seed: int, steps: int, args: argparse.Namespace, run_dir: Path) -> list[str]:
    sets = {
        "seed": seed,
        "train.num_steps": steps,
        "train.eval_every": max(steps // 10, 1),
        "train.val_tasks": args.val_tasks,
        "train.checkpoint_every": max(steps // 10, 1),
        "runtime.cpu_threads": 1,
    }
    if algo == "mamlpp":
        sets["inner.msl_anneal_steps"] = max(steps // 10, 1)
    for extra in args.set or []:
        key, value = extra.split("=", 1)
        if key.startswith(f"{algo}."):
            sets[key[len(algo) + 1 :]] = value
    cmd = [sys.executable, "-m", "metajax", "train", "--config", CONFIGS[algo], "--run-dir", str(run_dir)]
    cmd += ["--data-dir", args.data_dir, "--no-progress"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def run_on_cores(jobs: list[tuple], cores: int) -> list[str]:
    """Run ``(name, run_dir, command)`` jobs, at most ``cores`` at a time, each pinned to its own core; a job whose
    run directory already holds ``eval_final.json`` is skipped. A job may carry a fourth element, the name of a job
    that must have finished (successfully) before it starts. Output goes to ``run_dir.log``. Returns the names of
    the jobs that failed (a job whose prerequisite failed counts as failed)."""
    todo, running, free, failed, finished = list(jobs), [], list(range(cores)), [], set()
    while todo or running:
        for job in list(todo):
            if len(job) > 3 and job[3] in failed:
                todo.remove(job)
                failed.append(job[0])
        while free:
            ready = [j for j in todo if len(j) < 4 or j[3] in finished]
            if not ready:
                break
            todo.remove(ready[0])
            name, run_dir, cmd = ready[0][:3]
            if (run_dir / "eval_final.json").is_file():
                finished.add(name)
                continue
            core = free.pop(0)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = open(run_dir.with_suffix(".log"), "w")  # noqa: SIM115 - closed when the process ends
            print(f"start {name} on core {core}", file=sys.stderr, flush=True)
            proc = subprocess.Popen(["taskset", "-c", str(core), *cmd], stdout=log, stderr=subprocess.STDOUT)
            running.append((proc, log, name, core))
        if not running and todo and not any(len(j) < 4 or j[3] in finished for j in todo):
            raise ValueError(f"jobs wait for jobs that do not exist: {[j[0] for j in todo]}")
        time.sleep(2)
        for item in list(running):
            proc, log, name, core = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                free.append(core)
                print(f"done {name} (exit {proc.returncode})", file=sys.stderr, flush=True)
                (failed.append if proc.returncode != 0 else finished.add)(name)
    return failed


def collect(run_dir: Path) -> dict:
    evals = json.loads((run_dir / "eval_final.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "val_accuracy" in rec:
            curve.append((rec["step"], rec["time_s"], rec["val_accuracy"]))
    train = summary.get("train", summary)
    return {"eval": evals, "train_wall_s": train.get("train_wall_s"), "curve": curve}


def plot_curves(
    path: Path, groups: dict[str, tuple[str, dict]], x: str, xlabel: str, title: str, markers: bool = False
) -> None:
    """Validation accuracy of runs (``collect``'s ``curve``), one line per seed, a colour per group:
    ``groups = {label: (colour, {seed: result})}``; ``x`` is ``"step"`` or ``"minutes"`` of training."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        print(f"plot skipped: {err}", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (color, by_seed) in groups.items():
        for i, r in enumerate(by_seed.values()):
            xs = [c[0] if x == "step" else c[1] / 60 for c in r["curve"]]
            style = {"marker": "o", "ms": 3} if markers else {"alpha": 0.8}
            ax.plot(xs, [100 * c[2] for c in r["curve"]], color=color, label=label if i == 0 else None, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize="medium", wrap=True)
    if markers:
        ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--maml-steps", type=int, required=True)
    ap.add_argument("--mamlpp-steps", type=int, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--val-tasks", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side, one core each")
    ap.add_argument("--runs", default="runs/mamlpp-equal-time")
    ap.add_argument("--set", action="append", help="ALGO.KEY=VALUE: an extra override for one algorithm's runs")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    steps = {"maml": args.maml_steps, "mamlpp": args.mamlpp_steps}
    runs = Path(args.runs)
    jobs = []
    for seed in args.seeds:
        for algo in ("maml", "mamlpp"):
            run_dir = runs / f"{algo}-seed{seed}"
            jobs.append((f"{algo} seed {seed}", run_dir, command(algo, seed, steps[algo], args, run_dir)))
    failed = run_on_cores(jobs, args.jobs)
    if failed:
        print(f"failed runs: {failed}; see their .log files under {runs}", file=sys.stderr)
        return 1
    results = {algo: {seed: collect(runs / f"{algo}-seed{seed}") for seed in args.seeds} for algo in steps}
    policies = list(next(iter(results["maml"].values()))["eval"])
    pp_policies = list(next(iter(results["mamlpp"].values()))["eval"])
    info = machine()
    md = [
        "MAML vs MAML++, Omniglot 5-way 1-shot, equal training time: "
        f"MAML {args.maml_steps} meta-steps, MAML++ {args.mamlpp_steps}; one core per run; 600 test tasks, 15 queries "
        "per class; accuracy % (95 % CI).",
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']}.",
        "",
        "| algorithm | seed | train wall s | " + " | ".join(pp_policies) + " |",
        "|---|---|---|" + "---|" * len(pp_policies),
    ]
    summary = {}
    for algo, by_seed in results.items():
        for seed, r in by_seed.items():
            cells = []
            for p in pp_policies:
                e = r["eval"].get(p)
                cells.append("-" if e is None else f"{100 * e['accuracy']:.2f} ± {100 * e['ci95']:.2f}")
            md.append(f"| {algo} | {seed} | {r['train_wall_s']:.0f} | " + " | ".join(cells) + " |")
        summary[algo] = {}
        for p in pp_policies:
            accs = [r["eval"][p]["accuracy"] for r in by_seed.values() if p in r["eval"]]
            if accs:
                sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
                summary[algo][p] = {"mean": statistics.mean(accs), "sd_over_seeds": sd}
        curves = [r["curve"] for r in by_seed.values()]
        n = min(len(c) for c in curves)
        spread = [statistics.stdev([c[i][2] for c in curves]) for i in range(n)] if len(curves) > 1 else []
        summary[algo]["val_curve_sd_mean"] = statistics.mean(spread) if spread else None
    head = " | ".join(f"{p} mean (sd over seeds)" for p in pp_policies)
    md += ["", f"| algorithm | {head} | validation-curve sd |"]
    md += ["|---|" + "---|" * (len(pp_policies) + 1)]
    for algo in results:
        cells = []
        for p in pp_policies:
            s = summary[algo].get(p)
            cells.append("-" if s is None else f"{100 * s['mean']:.2f} ({100 * s['sd_over_seeds']:.2f})")
        sd = summary[algo]["val_curve_sd_mean"]
        md.append(f"| {algo} | " + " | ".join(cells) + f" | {'-' if sd is None else f'{100 * sd:.2f}'} |")
    md += [
        "",
        "validation-curve sd: the standard deviation across seeds of the validation accuracy at each validation "
        "point, averaged over the run (points in %); the paper's stability claim is about this spread.",
        f"MAML evaluates {policies}; MAML++ adds the running-statistics column.",
    ]
    payload = {"machine": info, "args": vars(args), "results": results, "summary": summary}
    stamp = write_results(
        args.out, "mamlpp-equal-time", payload, "\n".join(md) + "\n", config=args, data_dir=args.data_dir
    )
    plot_curves(
        Path(args.out) / f"{stamp}-mamlpp-equal-time.png",
        {algo: (color, results[algo]) for algo, color in (("maml", "tab:blue"), ("mamlpp", "tab:red"))},
        "minutes",
        "training time (min, one core)",
        "Omniglot 5-way 1-shot: MAML vs MAML++, one line per seed",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
