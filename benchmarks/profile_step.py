"""Where a compiled Omniglot-shaped meta-step spends its time, op by op.

    python benchmarks/profile_step.py                         # MAML k=1, conv=auto, top 30 ops
    python benchmarks/profile_step.py --algorithm fomaml --k 5 --conv patches --top 50

Runs the step of ``python benchmarks/run.py --only omniglot``
(``benchmarks/harness.py``'s ``omniglot_workload``: Conv4-64, 5-way 1-shot, 15
queries, meta-batch 32, tasks in a ``lax.map``) under
``jax.profiler`` and sums the duration of every XLA op (thunk) over
``--steps`` calls. Prints the heaviest ops with their share, calls per step
and, from the optimised HLO, each op's output shape and the JAX operation
it came from, so a slow fusion or dot can be traced back to the model code.
Durations of ops that XLA runs concurrently overlap, so the shares can sum
to more than 100 %.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", default="maml", choices=("maml", "fomaml", "reptile", "imaml"))
    parser.add_argument("--k", type=int, default=1, help="inner steps (default: %(default)s)")
    parser.add_argument("--conv", default="auto", help="conv4 convolution (default: %(default)s)")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="profiled calls (default: %(default)s)")
    parser.add_argument("--top", type=int, default=30, help="ops to print (default: %(default)s)")
    args = parser.parse_args(argv)
    for name in ("k", "meta_batch", "steps", "top"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    import jax
    from harness import omniglot_workload

    from metajax.models import resolve_conv_impl

    spec = {"algorithm": args.algorithm, "k": args.k, "conv": args.conv, "task_chunk": 1, "meta_batch": args.meta_batch}
    ms, params, tasks = omniglot_workload(spec)
    state = ms.init(params)
    t = args.meta_batch
    compiled = jax.jit(ms.step).lower(params, state, tasks).compile()
    hlo = compiled.as_text()
    jax.block_until_ready(compiled(params, state, tasks))  # warm-up

    with tempfile.TemporaryDirectory(prefix="metajax-profile-") as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        for _ in range(args.steps):
            jax.block_until_ready(compiled(params, state, tasks))
        jax.profiler.stop_trace()
        traces = sorted(Path(tmp).rglob("*.trace.json.gz"))
        if not traces:
            raise SystemExit(f"jax.profiler wrote no perfetto trace under {tmp}")
        events = json.loads(gzip.open(traces[-1]).read())
    events = events["traceEvents"] if isinstance(events, dict) else events

    # XLA ops are the trace events named like HLO instructions (fusion.3, dot.12, ynn_fusion.7, ...)
    ops = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+)", hlo, re.M)}
    origin = {
        m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]+)\"", hlo, re.M)
    }
    total: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    wall = 0.0
    for e in events:
        if e.get("ph") != "X":
            continue
        name = e.get("name", "")
        if name == "ThunkExecutor::Execute (wait for completion)":
            wall += e.get("dur", 0) / 1e6
        if name in ops:
            total[name] += e.get("dur", 0) / 1e6
            calls[name] += 1
    if not total:
        raise SystemExit("no XLA op events in the trace (this jaxlib's profiler does not record CPU thunks)")
    step_s = (wall or sum(total.values())) / args.steps
    print(
        f"{args.algorithm} k={args.k} conv={args.conv} ({resolve_conv_impl(args.conv)}), meta-batch {t}, "
        f"backend {jax.default_backend()}: {step_s:.3f} s per step under the profiler\n"
    )
    print(f"{'s/step':>8} {'share':>6} {'calls':>6}  op  [shape]  from")
    for name, dur in total.most_common(args.top):
        per = dur / args.steps
        src = origin.get(name, "")
        src = src if len(src) < 90 else "..." + src[-87:]
        print(f"{per:8.3f} {per / step_s:6.1%} {calls[name] // args.steps:6d}  {name}  [{ops[name]}]  {src}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
