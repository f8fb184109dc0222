"""Shared command line of the benchmarks that pin one process per core (core_scaling.py, processes_vs_streams.py)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", nargs="+", default=["maml", "fomaml"])
    p.add_argument("--k", type=int, default=1, help="inner steps (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: %(default)s)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def check(args: argparse.Namespace, names: tuple[str, ...], script: str) -> list[int]:
    """Reject counts below 1 and machines without two cores to pin to; returns the usable cores."""
    for name in names:
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit(f"{script} pins processes to cores with os.sched_setaffinity, which this OS lacks")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit(f"{script} needs 2 cores, this process may use {len(cores)}")
    return cores


def child_result(stdout: str):
    """The JSON a child printed on its last ``RESULT`` line."""
    return json.loads([ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def write(
    out: str, suffix: str, payload: dict, intro: str, header: list[str], cells: list[list[str]], config=None
) -> None:
    """``<out>/<timestamp>-<suffix>.json`` (``payload``) and ``.md`` (``intro`` and a table), then print the table."""
    from harness import write_results

    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(c) + " |" for c in cells]
    write_results(out, suffix, payload, intro + "\n\n" + "\n".join(rows) + "\n", config=config)
