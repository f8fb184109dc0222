"""Do two git revisions compute the same bits? Run the default job and a few-shot smoke run at each, compare.

    python benchmarks/same_results.py BASE_REV NEW_REV --data-dir DIR     # ~10 min on 2 cores
    python benchmarks/same_results.py 4293ec8 HEAD --data-dir DIR --skip-default
    python benchmarks/same_results.py 4aad41a HEAD --rounds 3       # and is the new one slower? (~8 min)

With ``--data-dir``, ``omniglot_5w1s_maml --smoke`` and ``omniglot_5w1s_mamlpp --smoke`` (a model with state)
run beside the default job. Each revision is checked out into a temporary ``git worktree`` and run as
``python -m metajax train`` from there
(``PYTHONPATH``), without a compilation cache, on the same machine. Compared: the SHA-256 of the parameter
files (``meta_params.msgpack``, ``best.msgpack``) and of ``curves.npz``, every metrics record except its
timings, and the numbers of the evaluation tables. A refactor must give the same bits; the table says which
files differ. With ``--rounds N`` each run is repeated N times, the two revisions alternating within a round so
that drift in the machine's speed hits both; every round must give the same bits, and a second table gives the
median training wall time (``train_wall_s`` of ``summary.json``: the training loop with its checkpoints, metrics
and validation, without compilation) of each revision and their ratio. Results go to
``benchmarks/results/DATE-same.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMINGS = ("time_s", "it_per_s")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _runs(data_dir: str | None, skip_default: bool) -> dict[str, list[str]]:
    runs = {} if skip_default else {"default": []}
    if data_dir is not None:
        runs["fewshot"] = ["--config", "omniglot_5w1s_maml", "--smoke", "--data-dir", data_dir]
        runs["mamlpp"] = ["--config", "omniglot_5w1s_mamlpp", "--smoke", "--data-dir", data_dir]
    return runs


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _numbers(path: Path) -> list[str]:
    """The numbers of a markdown table (the evaluation), in order."""
    return re.findall(r"-?\d+\.\d+", path.read_text()) if path.is_file() else []


def _fingerprint(run_dir: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ("meta_params.msgpack", "best.msgpack", "curves.npz"):
        if (run_dir / name).is_file():
            out[name] = _digest(run_dir / name)
    metrics = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        metrics.append({k: v for k, v in row.items() if k not in TIMINGS})
    out["metrics.jsonl (without timings)"] = hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()
    for table in sorted(run_dir.glob("eval*.md")):
        out[f"{table.name} (numbers)"] = hashlib.sha256(" ".join(_numbers(table)).encode()).hexdigest()
    return out


def _train(tree: Path, extra: list[str], run_dir: Path, label: str, run: str) -> tuple[dict[str, object], float]:
    """Run ``metajax train`` from the worktree ``tree``: the run's fingerprint and its training wall time."""
    cmd = [sys.executable, "-m", "metajax", "train", *extra, "--run-dir", str(run_dir)]
    cmd += ["--no-progress", "--compile-cache", "off"]
    proc = subprocess.run(cmd, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label} {run} failed: {proc.stderr.strip().splitlines()[-1:]}")
    fingerprint = _fingerprint(run_dir)
    wall = float(json.loads((run_dir / "summary.json").read_text())["train_wall_s"])
    shutil.rmtree(run_dir, ignore_errors=True)
    return fingerprint, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the baseline revision")
    parser.add_argument("new", help="the revision to compare with it (e.g. HEAD)")
    parser.add_argument("--data-dir", help="an Omniglot data directory: adds the few-shot smoke runs")
    parser.add_argument("--skip-default", action="store_true", help="leave out the default job (~2 min each)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat each run, alternating revisions (default 1)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be an integer >= 1, got {args.rounds}")
    # the runs start in temporary worktrees: a relative data directory would point elsewhere there
    data_dir = None if args.data_dir is None else str(Path(args.data_dir).resolve())
    runs = _runs(data_dir, args.skip_default)
    if not runs:
        raise SystemExit("nothing to run: give --data-dir or leave out --skip-default")
    revs = {name: _git("rev-parse", "--verify", f"{name}^{{commit}}") for name in (args.base, args.new)}
    result: dict[str, dict[str, dict[str, object]]] = {}
    walls: dict[str, dict[str, list[float]]] = {}
    deterministic = True
    with tempfile.TemporaryDirectory(prefix="metajax-same-") as tmp:
        trees = {label: Path(tmp) / label for label in ("base", "new")}
        try:
            for label, name in (("base", args.base), ("new", args.new)):
                _git("worktree", "add", "--detach", str(trees[label]), revs[name])
            for rnd in range(args.rounds):
                for label in ("base", "new") if rnd % 2 == 0 else ("new", "base"):
                    for run, extra in runs.items():
                        rev = revs[args.base if label == "base" else args.new]
                        print(
                            f"round {rnd + 1}/{args.rounds} {label} ({rev[:10]}): {run} ...",
                            file=sys.stderr,
                            flush=True,
                        )
                        fingerprint, wall = _train(trees[label], extra, Path(tmp) / f"{label}-{run}-{rnd}", label, run)
                        first = result.setdefault(run, {}).setdefault(label, fingerprint)
                        deterministic &= first == fingerprint
                        walls.setdefault(run, {}).setdefault(label, []).append(wall)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    sys.path.insert(0, str(HERE))
    from harness import machine, write_results

    info = machine()
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, jax {info['jax']}.",
        "",
        f"base = {args.base} ({revs[args.base][:10]}), new = {args.new} ({revs[args.new][:10]}); same machine, "
        "no compilation cache.",
        "",
        "| run | file | same bits |",
        "|---|---|---|",
    ]
    same = True
    for run, by in result.items():
        for key in by["base"]:
            equal = by["base"][key] == by["new"].get(key)
            same &= equal
            lines.append(f"| {run} | {key} | {'yes' if equal else '**no**'} |")
    if args.rounds > 1:
        lines += [
            "",
            f"Every round gave the same bits as the first: {'yes' if deterministic else '**no**'}.",
            "",
            f"Training wall time, median of {args.rounds} rounds (s; compilation excluded):",
            "",
            "| run | base | new | new / base |",
            "|---|---|---|---|",
        ]
        for run, by in walls.items():
            base, new = statistics.median(by["base"]), statistics.median(by["new"])
            lines.append(f"| {run} | {base:.2f} | {new:.2f} | {new / base:.3f} |")
    payload = {"machine": info, "revisions": revs, "runs": result, "train_wall_s": walls}
    write_results(args.out, "same", payload, "\n".join(lines) + "\n", config=args, data_dir=args.data_dir)
    return 0 if same and deterministic else 1


if __name__ == "__main__":
    sys.exit(main())
