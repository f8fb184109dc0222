"""metajax against learn2learn 0.2.0 on the same machine, in one run (Omniglot-shaped MAML workload).

Workload (both sides): Conv4-64 with batch norm, 28x28x1 inputs, 5-way 1-shot
with 15 queries per class, meta-batch 32, inner SGD rate 0.4, outer Adam
(Reptile: outer step 1 on the mean displacement); random data of that shape.
Variants alternate between the libraries for ``--rounds`` rounds, each in a
fresh subprocess (so peak RSS is that variant's), and the table reports the
median of all timed meta-iterations per side and their ratio. metajax runs
with a persistent compilation cache in a fresh directory (``--compile-cache``):
its first round compiles, later rounds load the stored step, and the table
reports the peak RSS of both.

Set-up of the learn2learn side (a separate venv; torch's CPU build from PyPI):

    python3 -m venv .l2l && .l2l/bin/pip install torch==2.13.0 numpy
    .l2l/bin/pip download --no-deps --no-binary :all: learn2learn==0.2.0 -d .l2l/src
    tar xzf .l2l/src/learn2learn-0.2.0.tar.gz -C .l2l/src
    python benchmarks/learn2learn_side_by_side.py --l2l-python .l2l/bin/python \\
        --l2l-src .l2l/src/learn2learn-0.2.0

learn2learn is not built or installed: benchmarks/l2l_worker.py imports its
pure-Python MAML and utils modules from the unpacked source, which sidesteps
both the sdist's pre-Cython-3 extension build and ``import learn2learn``
pulling in torchvision (which fails to load beside torch's CPU build).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = [("maml", 1), ("maml", 5), ("fomaml", 1), ("fomaml", 5), ("reptile", 5)]


def run(cmd: list[str], timeout: float) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(lines[-1][7:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--l2l-python", required=True, help="a Python with torch installed")
    parser.add_argument("--l2l-src", required=True, help="the unpacked learn2learn-0.2.0 source directory")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant")
    parser.add_argument("--repeats", type=int, default=3, help="timed meta-iterations per subprocess")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (JAX uses all cores)")
    parser.add_argument("--only", help="comma-separated algorithm:k pairs, e.g. maml:1,fomaml:1")
    parser.add_argument(
        "--conv",
        default="auto",
        choices=("auto", "patches", "winograd", "lax_vjp", "xla"),
        help="metajax's conv4 convolution (default auto: winograd on CPU, as conv4's default)",
    )
    parser.add_argument(
        "--compile-cache",
        default="fresh",
        help="metajax's persistent compilation cache: 'fresh' (default: a new empty directory, so round 1 "
        "compiles and later rounds load the stored step; the table shows both peaks), 'off', or a directory",
    )
    parser.add_argument(
        "--cpu-streams",
        type=int,
        default=0,
        help="metajax's CPU task streams (runtime.cpu_streams; default 0: one per core, as `metajax train` "
        "does; 1: one program over all tasks)",
    )
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    variants = VARIANTS
    if args.only:
        variants = [(a, int(k)) for a, k in (item.split(":") for item in args.only.split(","))]
    if not (Path(args.l2l_src) / "learn2learn" / "algorithms" / "maml.py").is_file():
        parser.error(f"--l2l-src {args.l2l_src!r} is not an unpacked learn2learn source release (see --help)")
    cache_dir = None
    if args.compile_cache == "fresh":
        cache_dir = tempfile.mkdtemp(prefix="metajax-xla-cache-")
    elif args.compile_cache.lower() != "off":
        cache_dir = args.compile_cache
    from harness import machine, worker_command

    samples: dict[tuple[str, str, int], list[dict]] = {}
    for rnd in range(args.rounds):
        for alg, k in variants:
            spec = {"algorithm": alg, "k": k, "meta_batch": args.meta_batch, "repeats": args.repeats}
            l2l = [args.l2l_python, str(HERE / "l2l_worker.py"), "--l2l-src", args.l2l_src]
            jax_spec = {**spec, "workload": "omniglot", "conv": args.conv, "task_chunk": 1, "cpu_threads": 0}
            jax_spec["cpu_streams"] = args.cpu_streams
            if cache_dir is not None:
                jax_spec["compile_cache"] = cache_dir
            if alg == "reptile":
                # learn2learn's Reptile loop scores nothing on the query batch; neither does metajax's here
                jax_spec["score_query"] = False
            mj = [*worker_command(), json.dumps(jax_spec)]
            for lib, cmd in (("learn2learn", [*l2l, json.dumps({**spec, "threads": args.threads})]), ("metajax", mj)):
                r = run(cmd, timeout=1800)
                samples.setdefault((lib, alg, k), []).append(r)
                shown = r.get("error") or f"{r['s_per_it']:.3f} s/it, peak RSS {r['peak_rss_mb']:.0f} MB"
                if r.get("compile_cache"):
                    shown += f" (compilation cache {r['compile_cache']}, {r['compile_s']:.1f} s)"
                print(f"round {rnd + 1} {lib:11s} {alg} k={k}: {shown}", file=sys.stderr, flush=True)

    info = machine()
    rows = []
    lines = [
        "| algorithm | k | learn2learn s/it | metajax s/it | speed-up | learn2learn peak RSS MB | "
        "metajax peak RSS MB, compiling | metajax peak RSS MB, cached step | metajax steady RSS MB | "
        "peak ratio compiling | peak ratio cached | steady ratio | metajax compile s / cached load s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(x, spec=".0f"):
        return "–" if x is None else format(x, spec)

    for alg, k in variants:
        med, rss, steady = {}, {}, {}
        ok = {lib: [r for r in samples[(lib, alg, k)] if "error" not in r] for lib in ("learn2learn", "metajax")}
        for lib, good in ok.items():
            if good:
                med[lib] = statistics.median(t for r in good for t in r["times_s"])
                rss[lib] = max(r["peak_rss_mb"] for r in good)
                steady[lib] = max(r.get("steady_rss_mb") or r["peak_rss_mb"] for r in good)
        cold = [r for r in ok["metajax"] if r.get("compile_cache") != "hit"]
        warm = [r for r in ok["metajax"] if r.get("compile_cache") == "hit"]
        peak_cold = max((r["peak_rss_mb"] for r in cold), default=None)
        peak_warm = max((r["peak_rss_mb"] for r in warm), default=None)
        compile_cold = statistics.median(r["compile_s"] for r in cold) if cold else None
        load_warm = statistics.median(r["compile_s"] for r in warm) if warm else None
        if len(med) == 2:
            ratio = med["learn2learn"] / med["metajax"]
            base = rss["learn2learn"]
            lines.append(
                f"| {alg} | {k} | {med['learn2learn']:.3f} | {med['metajax']:.3f} | {ratio:.2f}x | "
                f"{base:.0f} | {fmt(peak_cold)} | {fmt(peak_warm)} | {steady['metajax']:.0f} | "
                f"{fmt(peak_cold and peak_cold / base, '.2f')} | {fmt(peak_warm and peak_warm / base, '.2f')} | "
                f"{steady['metajax'] / base:.2f} | {fmt(compile_cold, '.1f')} / {fmt(load_warm, '.2f')} |"
            )
        else:
            errs = [r["error"] for lib in ("learn2learn", "metajax") for r in samples[(lib, alg, k)] if "error" in r]
            lines.append(f"| {alg} | {k} | failed: {errs[:1]} | | | | | | | | | | |")
        rows.append(
            {
                "algorithm": alg,
                "k": k,
                "median_s": med,
                "peak_rss_mb": rss,
                "steady_rss_mb": steady,
                "metajax_peak_rss_mb_compiling": peak_cold,
                "metajax_peak_rss_mb_cached": peak_warm,
                "metajax_compile_s": compile_cold,
                "metajax_cached_load_s": load_warm,
            }
        )
    if args.compile_cache == "fresh":
        shutil.rmtree(cache_dir, ignore_errors=True)
    torch_version = next((r.get("torch") for v in samples.values() for r in v if r.get("torch")), "?")
    resolved = next((r["conv_resolved"] for v in samples.values() for r in v if r.get("conv_resolved")), None)
    conv_text = args.conv if resolved in (None, args.conv) else f"{args.conv} ({resolved})"
    used = {
        r.get("devices") or 1 for (lib, _, _), v in samples.items() if lib == "metajax" for r in v if "s_per_it" in r
    }
    streams_text = "/".join(str(n) for n in sorted(used)) + " devices"
    md = (
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, jax {info['jax']}, "
        f"torch {torch_version}, learn2learn 0.2.0 (torch threads: {args.threads}); meta-batch "
        f"{args.meta_batch}; {args.rounds} alternating rounds x {args.repeats} timed meta-iterations per side; "
        f"metajax conv={conv_text}, cpu_streams={args.cpu_streams} ({streams_text}); compilation cache: "
        f"{args.compile_cache}.\n\n" + "\n".join(lines) + "\n"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = {
        "machine": info,
        "conv": args.conv,
        "cpu_streams": args.cpu_streams,
        "rows": rows,
        "samples": {f"{a}|{b}|{c}": v for (a, b, c), v in samples.items()},
    }
    from provenance import provenance, write_json

    write_json(out / f"l2l-{stamp}.json", raw, provenance(config=args))
    (out / f"l2l-{stamp}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
