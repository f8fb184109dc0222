"""Is metajax right on this device, and how fast is it? One command for a new GPU, TPU or CPU.

    python benchmarks/device_check.py              # ~21 programs (GPU/TPU: full shapes; CPU: small shapes)
    python benchmarks/device_check.py --quick      # 5 programs (meant for 2 min on a GPU; not yet timed on one)
    python benchmarks/device_check.py --full       # every algorithm x convolution x task strategy
    python benchmarks/device_check.py --compute-dtype bfloat16   # the mixed-precision path
    python benchmarks/device_check.py --plan       # compile only: FLOPs and memory per task, predicted step times

For each program -- an algorithm (MAML k = 1 and 5, FOMAML, Reptile, iMAML) with a convolution implementation
(``patches``, ``winograd``, ``xla``, ``lax_vjp``; ``auto`` picks ``xla`` on GPU/TPU) and a task strategy
(``vmap`` over the meta-batch or ``lax.map`` over chunks of ``--chunk`` tasks) -- on the Omniglot workload
(Conv4-64, 28x28x1, 5-way 1-shot, 15 queries per class, meta-batch 32) and a larger one (meta-batch 128):

* **correctness**: the meta-gradient of the first ``--check-tasks`` tasks against a float64 reference computed on
  the CPU in a separate process (``JAX_PLATFORMS=cpu``, ``JAX_ENABLE_X64=1``) on the same weights and tasks:
  error = max |got - ref| / max |ref| and 1 - cosine, passed when both are within the stated tolerance
  (float32: error <= 2e-3 and 1 - cosine <= 1e-5; bfloat16/float16 compute: 5e-2 and 1e-3). The float32
  tolerance is set by benchmarks/float32_accuracy.py: on single tasks, float32 rounding can move an activation
  across a ReLU or max-pool switch, where the meta-gradient jumps by up to ~1e-3 of its largest entry.
* **speed**: the median wall time of the jitted meta-step (meta-gradient and Adam update) over ``--repeats``
  calls after one warm-up call, tasks per second, FLOPs per step from XLA's cost analysis and the achieved
  FLOP/s against the device's peak (a table of common devices below; ``--peak-tflops`` overrides it), XLA's
  memory estimate of the program, the device's peak memory so far (GPU/TPU), and the compile time.

Matrix multiplications run at ``--matmul-precision highest`` (true float32) by default: on NVIDIA Ampere and
newer, JAX's default precision uses TF32 for float32 matmuls and convolutions, and on TPU one bfloat16 pass;
``--matmul-precision default`` measures that faster path, with the bfloat16 tolerance.

Writes ``DIR/DATE-device.{md,json}`` (``--out``, default benchmarks/results) and exits with status 1 if any
correctness check fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONVS = ("patches", "winograd", "xla", "lax_vjp")
ALGORITHMS = (("maml", 1), ("maml", 5), ("fomaml", 1), ("reptile", 5), ("imaml", 5))
TOLERANCE = {"float32": (2e-3, 1e-5), "low": (5e-2, 1e-3)}
# Dense peak TFLOP/s (float32 without tensor cores, and 16-bit tensor-core/MXU), from the vendors' data sheets.
PEAKS = {
    "H100 SXM": (67.0, 989.0),
    "H100 PCIe": (51.0, 756.0),
    "H100": (51.0, 756.0),
    "A100": (19.5, 312.0),
    "A10G": (31.2, 125.0),
    "A10": (31.2, 125.0),
    "L4": (30.3, 121.0),
    "V100": (15.7, 125.0),
    "T4": (8.1, 65.0),
    "TPU v5 lite": (None, 197.0),
    "TPU v5e": (None, 197.0),
    "TPU v5p": (None, 459.0),
    "TPU v4": (None, 275.0),
    "TPU v3": (None, 123.0),
}


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    filters: int
    meta_batch: int
    image: int = 28
    ways: int = 5
    shots: int = 1
    queries: int = 15


@dataclasses.dataclass(frozen=True)
class Program:
    workload: Workload
    algorithm: str
    k: int
    conv: str
    strategy: str  # "vmap" or "chunk"

    def label(self) -> str:
        return f"{self.workload.name} {self.algorithm} k={self.k} conv={self.conv} {self.strategy}"


def workloads(small: bool) -> tuple[Workload, Workload]:
    """The Omniglot workload and the larger one; ``small``: the CPU's reduced shapes (8 filters, meta-batch 4 / 8)."""
    if small:
        return Workload("omniglot-small", 8, 4), Workload("omniglot-small-mb8", 8, 8)
    return Workload("omniglot", 64, 32), Workload("omniglot-mb128", 64, 128)


def programs(mode: str, small: bool, backend: str) -> list[Program]:
    base, large = workloads(small)
    auto = "winograd" if backend == "cpu" else "xla"
    out: list[Program] = []
    if mode == "quick":
        out += [Program(base, "maml", 1, conv, "vmap") for conv in dict.fromkeys((auto, "xla"))]
        out += [Program(base, "maml", 1, auto, "chunk"), Program(base, "fomaml", 1, auto, "vmap")]
        out += [Program(large, "maml", 1, auto, "vmap")]
        return out
    if mode == "full":
        for alg, k in ALGORITHMS:
            out += [Program(base, alg, k, c, s) for c in CONVS for s in ("vmap", "chunk")]
    else:
        out += [Program(base, "maml", 1, c, s) for c in CONVS for s in ("vmap", "chunk")]
        out += [Program(base, alg, k, auto, s) for alg, k in ALGORITHMS[1:] for s in ("vmap", "chunk")]
    out += [Program(large, alg, k, auto, "vmap") for alg, k in ALGORITHMS]
    return out


def build(program: Program, compute_dtype: str, chunk: int):
    """(learner, meta_step, model) of a program."""
    import optax

    import metajax as mj
    from metajax.models import conv4, cross_entropy_loss

    w = program.workload
    model = conv4(ways=w.ways, filters=w.filters, image_size=w.image, conv=program.conv, compute_dtype=compute_dtype)
    factory = {"maml": mj.maml, "fomaml": mj.fomaml, "reptile": mj.reptile, "imaml": mj.imaml}[program.algorithm]
    learner = factory(
        cross_entropy_loss(model.apply),
        "sgd",
        program.k,
        inner_lr=0.1 if program.algorithm == "imaml" else 0.4,
        has_aux=True,
        task_chunk=chunk if program.strategy == "chunk" else None,
    )
    outer = optax.sgd(1.0) if program.algorithm == "reptile" else optax.adam(1e-3)
    return learner, mj.make_meta_step(learner, outer), model


@functools.lru_cache(maxsize=4)
def make_tasks(workload: Workload, num: int, seed: int = 1):
    """Black-and-white noise images (Omniglot-like: mostly one value, strokes of the other), NumPy float32.

    Cached: every program of a workload (its reference, FLOP count, check and timing) uses the same arrays.
    """
    rng = np.random.default_rng(seed)

    def part(n):
        x = (rng.random((num, workload.ways * n, workload.image, workload.image, 1)) > 0.7).astype(np.float32)
        y = np.tile(np.repeat(np.arange(workload.ways, dtype=np.int32), n), (num, 1))
        return x, y

    return part(workload.shots), part(workload.queries)


def _flatten(tree) -> dict[str, np.ndarray]:
    import jax

    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def reference_main(inp: str, out: str) -> None:
    """The float64 CPU reference (run in a subprocess with JAX_PLATFORMS=cpu and JAX_ENABLE_X64=1)."""
    import jax
    import jax.numpy as jnp

    import metajax as mj

    spec = json.loads(Path(inp + ".json").read_text())
    data = np.load(inp)
    w = Workload(**spec["workload"])
    program = Program(w, spec["algorithm"], spec["k"], "patches", "vmap")
    learner, _, model = build(program, "float32", 1)
    template = learner.init(model.init(jax.random.PRNGKey(0)))
    leaves = jax.tree_util.tree_leaves_with_path(template)
    flat = [jnp.asarray(data["w" + jax.tree_util.keystr(p)], jnp.float64) for p, _ in leaves]
    meta_params = jax.tree_util.tree_unflatten(jax.tree.structure(template), flat)
    tasks = mj.Task(
        (jnp.asarray(data["xs"], jnp.float64), jnp.asarray(data["ys"])),
        (jnp.asarray(data["xq"], jnp.float64), jnp.asarray(data["yq"])),
    )
    direction, _, _ = jax.jit(learner.meta_grad)(meta_params, tasks)
    np.savez(out, **_flatten(direction))


class References:
    """The float64 CPU references, computed in background processes (``JAX_PLATFORMS=cpu``, ``JAX_ENABLE_X64=1``).

    Every reference is started as soon as its inputs are known (at most ``parallel`` at a time), so the host's
    CPUs compute them while the device runs its programs; :meth:`get` waits for one.
    """

    def __init__(self, tmp: Path, parallel: int):
        self.tmp, self.parallel = tmp, max(1, parallel)
        self.pending: dict = {}  # key -> (input path, output path, label), waiting for a slot
        self.running: dict = {}  # key -> (Popen, output path, label)
        self.done: dict = {}  # key -> the reference's arrays, or the exception that stopped it

    @staticmethod
    def key(program: Program) -> tuple:
        return (program.workload, program.algorithm, program.k)

    def submit(self, program: Program, weights: dict[str, np.ndarray], tasks) -> None:
        key = self.key(program)
        if key in self.pending or key in self.running or key in self.done:
            return
        n = len(self.pending) + len(self.running) + len(self.done)
        inp, out = self.tmp / f"ref-{n}.npz", self.tmp / f"ref-{n}-out.npz"
        (xs, ys), (xq, yq) = tasks
        np.savez(inp, xs=xs, ys=ys, xq=xq, yq=yq, **{"w" + k: v for k, v in weights.items()})
        spec = {"workload": dataclasses.asdict(program.workload), "algorithm": program.algorithm, "k": program.k}
        Path(str(inp) + ".json").write_text(json.dumps(spec))
        self.pending[key] = (inp, out, program.label())
        self._start()

    def _start(self) -> None:
        while self.pending and len(self.running) < self.parallel:
            key, (inp, out, label) = next(iter(self.pending.items()))
            del self.pending[key]
            env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--reference", str(inp), str(out)]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.running[key] = (proc, out, label)

    def get(self, program: Program) -> dict[str, np.ndarray]:
        key = self.key(program)
        while key not in self.done:
            if key in self.pending:  # waiting for a free slot: finish the oldest running one first
                oldest = next(iter(self.running))
                self._finish(oldest)
            else:
                self._finish(key)
            self._start()
        result = self.done[key]
        if isinstance(result, Exception):
            raise result
        return result

    def _finish(self, key) -> None:
        proc, out, label = self.running.pop(key)
        _, err = proc.communicate()
        if proc.returncode != 0:
            self.done[key] = RuntimeError(f"the float64 reference failed for {label}: {err.strip()[-2000:]}")
        else:
            self.done[key] = dict(np.load(out))

    def __enter__(self) -> References:
        return self

    def __exit__(self, *exc) -> None:
        """Stop the references nobody asked for (a program that failed before its check) before ``tmp`` goes."""
        for proc, _, _ in self.running.values():
            proc.kill()
            proc.communicate()


def compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[float, float]:
    """(max |got - ref| / max |ref|, 1 - cosine) over the whole pytree, in float64."""
    if set(got) != set(ref):
        raise ValueError(f"different parameters: {sorted(set(got) ^ set(ref))}")
    a = np.concatenate([np.asarray(got[n], np.float64).ravel() for n in sorted(ref)])
    b = np.concatenate([np.asarray(ref[n], np.float64).ravel() for n in sorted(ref)])
    err = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return err, 1.0 - cos


def device_peak(device, compute_dtype: str, override: float | None) -> float | None:
    """Peak TFLOP/s of the device for this precision: ``override``, else the table above, else None."""
    if override is not None:
        return override
    kind = getattr(device, "device_kind", "")
    for name, (fp32, low) in PEAKS.items():
        if name.lower() in kind.lower():
            return low if compute_dtype != "float32" or fp32 is None else fp32
    return None


@contextlib.contextmanager
def _unrolled_scans():
    """Every ``lax.scan`` (inner loops, ``lax.map`` chunks) traced fully unrolled while this is active."""
    import jax

    real = jax.lax.scan

    def scan(f, init, xs=None, length=None, reverse=False, unroll=1, **kwargs):
        return real(f, init, xs, length=length, reverse=reverse, unroll=True, **kwargs)

    jax.lax.scan = scan
    try:
        yield
    finally:
        jax.lax.scan = real


def abstract_step(program: Program, compute_dtype: str, chunk: int):
    """``(meta_step, params, state, tasks)`` to lower the program's meta-step: shapes only for the parameters."""
    import jax

    import metajax as mj

    learner, meta_step, model = build(program, compute_dtype, chunk)
    (xs, ys), (xq, yq) = make_tasks(program.workload, program.workload.meta_batch)
    params = jax.eval_shape(lambda: learner.init(model.init(jax.random.PRNGKey(0))))
    return meta_step, params, jax.eval_shape(meta_step.init, params), mj.Task((xs, ys), (xq, yq))


_FLOPS: dict = {}


def count_flops(program: Program, compute_dtype: str, chunk: int) -> float | None:
    """FLOPs of one meta-step: XLA's cost analysis of the program lowered with its loops unrolled.

    XLA's cost analysis counts the body of a loop once, so the compiled program's count is the same for k = 1
    and k = 5 inner steps. This lowers the step again (nothing is compiled, ~2-5 s) with every ``lax.scan``
    unrolled. iMAML's conjugate-gradient solve is a ``while_loop`` (it may stop early): its iterations are
    still counted once, so iMAML's count is a lower bound.
    """
    import jax

    key = (program, compute_dtype)
    if key not in _FLOPS:
        with _unrolled_scans():
            meta_step, *step_args = abstract_step(program, compute_dtype, chunk)
            cost = jax.jit(meta_step.step).lower(*step_args).cost_analysis()
        if isinstance(cost, list):
            cost = cost[0] if cost else None
        _FLOPS[key] = float(cost["flops"]) if cost and "flops" in cost else None
    return _FLOPS[key]


def checked_tasks(program: Program, args) -> int:
    """How many of the meta-batch's first tasks the correctness check uses (a whole number of chunks)."""
    n = min(args.check_tasks, program.workload.meta_batch)
    if program.strategy == "chunk":
        n = max(args.chunk, n - n % args.chunk)
    return n


def submit_reference(program: Program, args, refs: References) -> None:
    import jax

    w = program.workload
    (xs, ys), (xq, yq) = make_tasks(w, w.meta_batch)
    n = checked_tasks(program, args)
    learner, _, model = build(program, "float32", args.chunk)
    weights = _flatten(learner.init(model.init(jax.random.PRNGKey(0))))
    refs.submit(program, weights, ((xs[:n], ys[:n]), (xq[:n], yq[:n])))


def run_program(program: Program, args, refs: References, perturb=None) -> dict:
    import jax
    import jax.numpy as jnp

    import metajax as mj
    from metajax.diagnostics import compiled_memory

    learner, meta_step, model = build(program, args.compute_dtype, args.chunk)
    w = program.workload
    (xs, ys), (xq, yq) = make_tasks(w, w.meta_batch)
    meta_params = learner.init(model.init(jax.random.PRNGKey(0)))
    row: dict = {"program": program.label(), **dataclasses.asdict(program), "workload": w.name}
    # correctness on the first check tasks
    n = checked_tasks(program, args)

    sub = mj.Task((jnp.asarray(xs[:n]), jnp.asarray(ys[:n])), (jnp.asarray(xq[:n]), jnp.asarray(yq[:n])))
    direction, _, _ = jax.jit(learner.meta_grad)(meta_params, sub)
    got = _flatten(direction)
    if perturb is not None:
        got = perturb(got)
    err, one_minus_cos = compare(got, refs.get(program))
    tol_err, tol_cos = TOLERANCE[
        "float32" if args.compute_dtype == "float32" and args.matmul_precision == "highest" else "low"
    ]
    row.update(check_tasks=n, rel_err=err, one_minus_cos=one_minus_cos, tol_err=tol_err, tol_cos=tol_cos)
    row["ok"] = bool(err <= tol_err and one_minus_cos <= tol_cos)
    if args.correctness_only:
        return row
    # speed on the whole meta-batch
    tasks = mj.Task((jnp.asarray(xs), jnp.asarray(ys)), (jnp.asarray(xq), jnp.asarray(yq)))
    state = meta_step.init(meta_params)
    step = jax.jit(meta_step.step)
    t0 = time.perf_counter()
    compiled = step.lower(meta_params, state, tasks).compile()
    row["compile_s"] = time.perf_counter() - t0
    row["flops_per_step"] = count_flops(program, args.compute_dtype, args.chunk)
    est = compiled_memory(compiled)
    row["xla_peak_mb"] = None if est is None else est.peak_bytes / 2**20
    jax.block_until_ready(compiled(meta_params, state, tasks))
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(meta_params, state, tasks))
        times.append(time.perf_counter() - t0)
    row["s_per_step"] = statistics.median(times)
    row["tasks_per_s"] = w.meta_batch / row["s_per_step"]
    if row["flops_per_step"]:
        row["tflops"] = row["flops_per_step"] / row["s_per_step"] / 1e12
        peak = device_peak(jax.devices()[0], args.compute_dtype, args.peak_tflops)
        row["peak_fraction"] = None if peak is None else row["tflops"] / peak
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    row["device_peak_mb"] = stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None
    return row


PLAN_DEVICES = ("V100", "T4", "A10G", "L4", "A100", "H100 SXM", "TPU v4", "TPU v5e")


def plan(args) -> int:
    """Compile only (any backend, nothing runs): FLOPs and memory per task and predicted step times on common devices.

    For each algorithm on the Omniglot workload (``conv="xla"``, tasks vmapped: the accelerator path) in float32
    and bfloat16: XLA's FLOP count and memory estimate of one meta-step, divided by the meta-batch, and the time
    a meta-step would take at ``--plan-fraction`` of each device's peak (float32 peaks for float32, 16-bit peaks
    for bfloat16; TPUs run float32 matmuls at highest precision as several bfloat16 passes, so no float32 row).
    Predictions, not measurements.
    """
    import jax

    from metajax.diagnostics import compiled_memory

    sys.path.insert(0, str(HERE))
    from harness import machine, write_results

    w = workloads(args.size == "small")[0]
    rows = []
    for dtype in ("float32", "bfloat16"):
        for alg, k in ALGORITHMS:
            program = Program(w, alg, k, "xla", "vmap")
            meta_step, *step_args = abstract_step(program, dtype, args.chunk)
            t0 = time.perf_counter()
            compiled = jax.jit(meta_step.step).lower(*step_args).compile()
            est = compiled_memory(compiled)
            flops = count_flops(program, dtype, args.chunk)
            row = {"algorithm": alg, "k": k, "compute_dtype": dtype, "compile_s": time.perf_counter() - t0}
            row["gflop_per_task"] = None if flops is None else flops / w.meta_batch / 1e9
            row["temp_mb_per_task"] = None if est is None else est.temp_bytes / w.meta_batch / 2**20
            row["predicted_ms"] = {}
            for device in PLAN_DEVICES:
                fp32, low = PEAKS[device]
                peak = fp32 if dtype == "float32" else low
                if flops is not None and peak is not None:
                    row["predicted_ms"][device] = flops / (peak * 1e12 * args.plan_fraction) * 1e3
            rows.append(row)
            print(f"{alg} k={k} {dtype}: {row['gflop_per_task']:.2f} GFLOP/task", file=sys.stderr, flush=True)
    info = machine()
    lines = [
        f"Compiled on {jax.default_backend()} ({info['cpu']}); jax {info['jax']}. "
        f"Workload {w.name}: Conv4-{w.filters}, {w.image}x{w.image}x1, {w.ways}-way {w.shots}-shot, "
        f"{w.queries} queries per class, meta-batch {w.meta_batch}, "
        "conv=xla, tasks vmapped. Predicted milliseconds per meta-step at "
        f"{100 * args.plan_fraction:.0f} % of each device's peak (predictions, not measurements). FLOPs counted with "
        "the inner loops unrolled; iMAML's conjugate-gradient iterations are counted once (a lower bound).",
        "",
        "| algorithm | k | compute | GFLOP / task | XLA temp MB / task | " + " | ".join(PLAN_DEVICES) + " |",
        "|---|---|---|---|---|" + "---|" * len(PLAN_DEVICES),
    ]
    for r in rows:
        cells = [_fmt(r["predicted_ms"].get(d), ".1f") for d in PLAN_DEVICES]
        lines.append(
            f"| {r['algorithm']} | {r['k']} | {r['compute_dtype']} | {_fmt(r['gflop_per_task'], '.2f')} | "
            f"{_fmt(r['temp_mb_per_task'], '.1f')} | " + " | ".join(cells) + " |"
        )
    meta = {"machine": info, "workload": dataclasses.asdict(w), "fraction": args.plan_fraction, "peaks": PEAKS}
    write_results(args.out, "plan", {**meta, "rows": rows}, "\n".join(lines) + "\n", config=args)
    return 0


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = (
        "| program | tasks checked | max rel. error | 1 - cos | ok | s / step | tasks / s | GFLOP / step | TFLOP/s "
        "| of peak | XLA peak MB | device peak MB | compile s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['program']} | **failed: {r['error']}** |" + " |" * 11)
            continue
        gflop = None if r.get("flops_per_step") is None else r["flops_per_step"] / 1e9
        frac = r.get("peak_fraction")
        if "s_per_step" not in r:  # --correctness-only
            lines.append(
                f"| {r['program']} | {r['check_tasks']} | {r['rel_err']:.1e} | {r['one_minus_cos']:.1e} | "
                f"{'yes' if r['ok'] else '**NO**'} |" + " - |" * 8
            )
            continue
        lines.append(
            f"| {r['program']} | {r['check_tasks']} | {r['rel_err']:.1e} | {r['one_minus_cos']:.1e} | "
            f"{'yes' if r['ok'] else '**NO**'} | {r['s_per_step']:.4f} | {r['tasks_per_s']:.1f} | "
            f"{_fmt(gflop, '.2f')} | "
            f"{_fmt(r.get('tflops'), '.3f')} | {'-' if frac is None else f'{100 * frac:.1f} %'} | "
            f"{_fmt(r['xla_peak_mb'], '.0f')} | {_fmt(r['device_peak_mb'], '.0f')} | {r['compile_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="5 programs (meant for 2 min on a GPU; untimed there)")
    mode.add_argument("--full", action="store_true", help="every algorithm x convolution x task strategy")
    parser.add_argument(
        "--size",
        choices=("auto", "small", "full"),
        default="auto",
        help="shapes: full (Conv4-64, meta-batch 32 and 128), small (8 filters, meta-batch 4 and 8); "
        "auto = small on CPU, full elsewhere",
    )
    parser.add_argument(
        "--compute-dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="the models' compute dtype (parameters, updates and losses stay float32)",
    )
    parser.add_argument(
        "--matmul-precision",
        choices=("highest", "default"),
        default="highest",
        help="jax_default_matmul_precision for the device programs (default: highest)",
    )
    parser.add_argument("--check-tasks", type=int, default=8, help="tasks in the correctness check (default 8)")
    parser.add_argument(
        "--chunk", type=int, default=4, help="tasks per lax.map chunk of the chunk strategy (default 4)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per program (default 5, --quick 3)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak TFLOP/s for this precision")
    parser.add_argument("--plan", action="store_true", help="compile only: FLOPs, memory per task, predicted times")
    parser.add_argument("--plan-fraction", type=float, default=0.3, help="fraction of peak for --plan (default 0.3)")
    parser.add_argument("--correctness-only", action="store_true", help="check the meta-gradients, time nothing")
    parser.add_argument("--only", default=None, help="run only programs whose label contains this text")
    parser.add_argument(
        "--reference-processes",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="float64 CPU references computed at once in the background (default: half the cores)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the tables go")
    parser.add_argument("--reference", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("check_tasks", "chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(args, name)}")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        parser.error(f"--repeats must be an integer >= 1, got {args.repeats}")
    return args


def main(argv: list[str] | None = None, perturb=None) -> int:
    args = parse_args(argv)
    if args.reference:
        reference_main(*args.reference)
        return 0
    if args.plan:
        return plan(args)
    import jax

    sys.path.insert(0, str(HERE))
    from harness import machine, write_results

    if args.matmul_precision == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")
    backend = jax.default_backend()
    device = jax.devices()[0]
    small = args.size == "small" or (args.size == "auto" and backend == "cpu")
    mode = "quick" if args.quick else "full" if args.full else "default"
    todo = [p for p in programs(mode, small, backend) if args.only is None or args.only in p.label()]
    if not todo:
        raise SystemExit(f"--only {args.only!r} matches no program")
    kind = getattr(device, "device_kind", backend)
    print(
        f"{backend}: {len(jax.devices())} x {kind}; {len(todo)} programs ({'small' if small else 'full'} shapes)",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="metajax-device-") as tmp,
        References(Path(tmp), args.reference_processes) as refs,
    ):
        for program in todo:
            submit_reference(program, args, refs)
        for i, program in enumerate(todo, 1):
            t0 = time.perf_counter()
            try:
                row = run_program(program, args, refs, perturb)
            except Exception as exc:  # one failing program is a row, not the end of the check
                row = {"program": program.label(), "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            rows.append(row)
            status = "failed" if "error" in row else ("ok" if row["ok"] else "WRONG")
            print(
                f"[{i}/{len(todo)}] {program.label()}: {status} ({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    info = machine()
    info.update(backend=backend, device=kind, devices=len(jax.devices()))
    failed = [r for r in rows if "error" in r or not r["ok"]]
    md = (
        f"Device: {len(jax.devices())} x {kind} ({backend}); host {info['cpu']}, {info['cores']} cores; "
        f"Python {info['python']}, jax {info['jax']}.\n"
        f"Compute dtype {args.compute_dtype}, matmul precision {args.matmul_precision}; "
        f"{'small' if small else 'full'} shapes; median of {args.repeats} timed calls.\n"
        f"Correctness against a float64 CPU reference: "
        f"{'all passed' if not failed else f'{len(failed)} of {len(rows)} FAILED'}.\n\n" + table(rows)
    )
    meta = {"machine": info, "compute_dtype": args.compute_dtype, "matmul_precision": args.matmul_precision}
    write_results(args.out, "device", {**meta, "rows": rows}, md, config=args)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
