"""Time the same Omniglot-shaped workloads at two git revisions, alternating, in one run.

    python benchmarks/compare_commits.py BASE_REV NEW_REV            # MAML/FOMAML k=1,5 and Reptile k=5
    python benchmarks/compare_commits.py 8b900ff HEAD --only maml:1 --rounds 3

Each revision is checked out into a temporary ``git worktree`` and imported
from there (``PYTHONPATH``; the script checks that the worker imported that
tree's ``metajax``). Every measurement is a fresh process running
the worker of ``run.py`` (``benchmarks/harness.py --worker SPEC`` of that revision), so
compile time and peak RSS are per configuration. The two revisions alternate
within each round so that drift in the machine's speed hits both; the table
reports the median over rounds of each worker's median step time, and the ratio
NEW / BASE. Results go to ``benchmarks/results/DATE-commits.{json,md}``.

This is how a change that cannot be switched by an option (a rewritten
backward pass, say) gets a side-by-side number.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT = ("maml:1", "fomaml:1", "maml:5", "fomaml:5", "reptile:5")


def _spec(alg: str, k: int, conv: str, repeats: int) -> dict:
    return {
        "workload": "omniglot",
        "meta_batch": 32,
        "cpu_threads": 0,
        "repeats": repeats,
        "algorithm": alg,
        "k": k,
        "conv": conv,
        "task_chunk": 1,
        "closed_form": True,
    }


def _parse_pairs(items: list[str]) -> list[tuple[str, int]]:
    out = []
    for item in items:
        alg, sep, k = item.partition(":")
        if not sep or not k.isdigit() or alg not in ("maml", "fomaml", "reptile", "imaml"):
            raise SystemExit(
                f"--only: expected ALGORITHM:K such as maml:1 (maml, fomaml, reptile, imaml), got {item!r}"
            )
        out.append((alg, int(k)))
    return out


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _run_worker(tree: Path, spec: dict) -> dict:
    from harness import run_worker

    r = run_worker(spec, env=dict(os.environ, PYTHONPATH=str(tree)), cwd=tree, tree=tree)
    if "error" in r:
        raise RuntimeError(f"worker failed in {tree} for {spec}: {r['error']}")
    return r


def _check_import(tree: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree))
    where = subprocess.run(
        [sys.executable, "-c", "import metajax, os; print(os.path.realpath(metajax.__file__))"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(tree.resolve())):
        raise SystemExit(f"PYTHONPATH={tree} imported metajax from {where}, not from the worktree")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the baseline revision (commit, tag, branch)")
    parser.add_argument("new", help="the revision to compare with it (e.g. HEAD)")
    parser.add_argument(
        "--only", nargs="+", default=list(DEFAULT), metavar="ALG:K", help="workloads (default: %(default)s)"
    )
    parser.add_argument("--conv", default="patches", help="conv4 convolution for both (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed meta-steps per worker (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1:
        raise SystemExit(f"--rounds and --repeats must be >= 1, got {args.rounds} and {args.repeats}")
    pairs = _parse_pairs(args.only)
    revs = {}
    for name in (args.base, args.new):
        try:
            revs[name] = _git("rev-parse", "--verify", f"{name}^{{commit}}")
        except subprocess.CalledProcessError:
            raise SystemExit(f"not a revision of {ROOT}: {name!r}") from None

    from harness import machine

    rows = []
    with tempfile.TemporaryDirectory(prefix="metajax-commits-") as tmp:
        trees = {}
        for label, name in (("base", args.base), ("new", args.new)):
            tree = Path(tmp) / label
            _git("worktree", "add", "--detach", str(tree), revs[name])
            trees[label] = tree
        try:
            for tree in trees.values():
                _check_import(tree)
            total = args.rounds * len(pairs) * 2
            done = 0
            for rnd in range(args.rounds):
                for alg, k in pairs:
                    for label in ("base", "new"):
                        done += 1
                        spec = _spec(alg, k, args.conv, args.repeats)
                        r = _run_worker(trees[label], spec)
                        r.update(
                            revision=label, commit=revs[args.base if label == "base" else args.new][:10], round=rnd
                        )
                        rows.append(r)
                        print(
                            f"[{done}/{total}] {alg} k={k} {label} ({r['commit']}): {r['s_per_it']:.3f} s/it, "
                            f"compile {r['compile_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB",
                            flush=True,
                        )
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine()
    meta = {"base": {"name": args.base, "commit": revs[args.base]}, "new": {"name": args.new, "commit": revs[args.new]}}
    from provenance import provenance, write_json

    write_json(args.out / f"{stamp}-commits.json", {"machine": info, **meta, "rows": rows}, provenance(config=args))
    md = _table(rows, pairs, info, meta, args)
    (args.out / f"{stamp}-commits.md").write_text(md)
    print(md)
    print(f"wrote {args.out / (stamp + '-commits.md')}")
    return 0


def _table(rows, pairs, info, meta, args) -> str:
    def med(alg, k, label, key):
        vals = [r[key] for r in rows if r["algorithm"] == alg and r["k"] == k and r["revision"] == label]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else float("nan")

    machine_line = f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, jax {info['jax']}."
    base, new = meta["base"], meta["new"]
    head = (
        f"{machine_line}\n\nbase = {base['name']} ({base['commit'][:10]}), new = {new['name']} "
        f"({new['commit'][:10]}); conv={args.conv}, meta-batch 32, "
        f"{args.rounds} alternating rounds x {args.repeats} timed meta-steps; medians over rounds.\n\n"
        "| algorithm | k | base s/it | new s/it | new / base | base compile s | new compile s "
        "| base peak RSS MB | new peak RSS MB |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for alg, k in pairs:
        b, n = med(alg, k, "base", "s_per_it"), med(alg, k, "new", "s_per_it")
        lines.append(
            f"| {alg} | {k} | {b:.3f} | {n:.3f} | {n / b:.2f} | {med(alg, k, 'base', 'compile_s'):.1f} | "
            f"{med(alg, k, 'new', 'compile_s'):.1f} | {med(alg, k, 'base', 'peak_rss_mb'):.0f} | "
            f"{med(alg, k, 'new', 'peak_rss_mb'):.0f} |"
        )
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
