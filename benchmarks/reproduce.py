"""The results store behind every accuracy and MSE number that README.md, docs/ and benchmarks/README.md publish.

Each published row is an entry of ``ROWS`` in benchmarks/rows.py (the command that produces it) and, once run, a
small JSON file ``benchmarks/results/reproduction/NAME.json``: the evaluation results, the resolved config, the
command, the commit, the machine, the library versions and the wall time (never parameters or data). The
published tables are generated from those files; rows not rerun since the results store began keep their earlier
numbers from ``unbacked.json`` and say "not backed by a result file yet".

    python benchmarks/reproduce.py list                       # every row and whether it has a result file
    python benchmarks/reproduce.py run NAME [--data-dir DIR]  # run a row (training + evaluation) and record it
    python benchmarks/reproduce.py record NAME RUN_DIR         # record a finished run directory as NAME
    python benchmarks/reproduce.py tables                     # rewrite the generated tables in the docs
    python benchmarks/reproduce.py tables --check             # exit 1 if a generated table is out of date

Run directories go to ``runs/reproduce/NAME`` (``--runs DIR``); a row that is interrupted resumes when the same
command is given again (``metajax train`` resumes from the run directory's last checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from provenance import code_commit, portable, provenance
from rows import NOT_BACKED, ROOT, ROWS, STORE, Row, load
from tables import update_tables

# ----------------------------------------------------------------------------------------------- provenance


def machine() -> dict[str, object]:
    """The CPU model, core count and load of this machine (the load says whether the run shared it)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "loadavg_1_5_15": [round(x, 2) for x in load] if load else None,
    }


# ----------------------------------------------------------------------------------------------- run, record


def run(row: Row, runs: Path, data_dir: str | None) -> Path:
    run_dir = runs / row.name
    if row.kind == "finetune":
        source = runs / row.source
        if not (source / "summary.json").is_file():
            raise SystemExit(f"{row.name}: run the row {row.source!r} first ({source}/summary.json is missing)")
        cmd = row.command(str(source), data_dir) + ["--out", str(run_dir)]
    else:
        cmd = row.command(str(run_dir), data_dir)
    print("$ " + shlex.join(cmd), flush=True)
    start, code = machine(), code_commit()  # the code as the run imports it, before anything can change it
    t = time.time()
    # -P: the metajax that `import metajax` finds (installed, or $PYTHONPATH), not one in the working directory
    subprocess.run([sys.executable, "-P", "-m", "metajax", *cmd[1:]], check=True)
    wall = time.time() - t
    record(row, run_dir, wall_s=wall, command=cmd, load_at_start=start["loadavg_1_5_15"], code=code, data_dir=data_dir)
    return run_dir


def record(
    row: Row,
    run_dir: Path,
    wall_s: float | None = None,
    command: list[str] | None = None,
    load_at_start: object = None,
    code: dict[str, object] | None = None,
    data_dir: str | None = None,
) -> Path:
    run_dir = Path(run_dir)
    if row.kind == "finetune":
        results = json.loads((run_dir / "finetune.json").read_text())
        config = json.loads((run_dir.parent / row.source / "config.json").read_text())
        versions = json.loads((run_dir.parent / row.source / "versions.json").read_text())
        summary = None
    else:
        summary = json.loads((run_dir / "summary.json").read_text())
        results = summary.pop("results")
        config = json.loads((run_dir / "config.json").read_text())
        versions = json.loads((run_dir / "versions.json").read_text())
    for key in ("data_dir",):  # a machine's path: not part of the result
        config.get("data", {}).pop(key, None)
    m = machine()
    m["loadavg_1_5_15_at_start"] = load_at_start
    code = code or code_commit()
    command_line = (
        "python benchmarks/reproduce.py run " + row.name + (" --data-dir DIR" if row.kind != "sinusoid" else "")
    )
    entry = {
        "name": row.name,
        "kind": row.kind,
        "config": row.config,
        "overrides": list(row.overrides),
        "command": command_line,
        # the run's own command, local paths made portable ($DATA_DIR, $LOCAL/NAME)
        "metajax_command": shlex.join(portable(command, data_dir)) if command else None,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": code["commit"],
        "clean": code["clean"],
        "machine": m,
        "versions": versions,
        "wall_s": None if wall_s is None else round(wall_s, 1),
        "train": summary,
        "results": results,
        "resolved_config": config,
        # the schema of every result file (benchmarks/provenance.py); the keys above are what the tables read
        "provenance": provenance(
            command=command_line,
            config={"name": row.config, "overrides": list(row.overrides)},
            wall_s=wall_s,
            code=code,
            data_dir=data_dir,
        ),
    }
    STORE.mkdir(parents=True, exist_ok=True)
    out = STORE / f"{row.name}.json"
    out.write_text(json.dumps(entry, indent=1, sort_keys=False, allow_nan=False) + "\n")
    print(f"recorded {out.relative_to(ROOT)}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every row and its result file")
    r = sub.add_parser("run", help="run rows and record them")
    r.add_argument("names", nargs="+", choices=sorted(ROWS), metavar="NAME")
    r.add_argument("--data-dir", default=os.environ.get("METAJAX_DATA_DIR"))
    r.add_argument("--runs", type=Path, default=ROOT / "runs" / "reproduce")
    c = sub.add_parser("record", help="record a finished run directory")
    c.add_argument("name", choices=sorted(ROWS), metavar="NAME")
    c.add_argument("run_dir", type=Path)
    t = sub.add_parser("tables", help="regenerate the published tables from the result files")
    t.add_argument("--check", action="store_true", help="exit 1 if a table differs from the result files")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for name in ROWS:
            e = load(name)
            print(f"{name:32s} " + (f"{e['date']} {e['commit'][:10]}" if e else NOT_BACKED))
        return 0
    if args.cmd == "run":
        for name in args.names:
            run(ROWS[name], args.runs, args.data_dir)
        return 0
    if args.cmd == "record":
        record(ROWS[args.name], args.run_dir)
        return 0
    stale = update_tables(check=args.check)
    for path in stale:
        print(f"{'out of date' if args.check else 'rewrote'}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
