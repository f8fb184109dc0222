"""Meta-training throughput, compile time and peak memory, variants side by side.

    python benchmarks/run.py            # quick: the table in benchmarks/README.md (~12 min on 2 cores)
    python benchmarks/run.py --full     # more strategies and repeats
    python benchmarks/run.py --only sinusoid

Every variant runs in its own subprocess (so peak RSS is that variant's) and
reports: the median time of ``--repeats`` timed calls after one warm-up call,
meta-iterations per second, compile time (lower + compile, measured
separately), XLA's temporary-buffer estimate, and the process's peak RSS.
Results go to ``benchmarks/results/<timestamp>.json`` and ``.md``, rewritten after
every variant (an interrupted run keeps what it measured; ``"complete"`` says
whether it finished).

Workloads:
  sinusoid  MLP 1-40-40-1, K=10 support/query, meta-batch 25; 500 meta-steps
            fused per compiled call (on-device task sampling), so dispatch is
            not measured.
  episodes  the on-device episode sampler alone on an Omniglot-sized uint8
            array (4,400 classes): task batches per second (100 per call).
  omniglot  synthetic Omniglot-shaped data: Conv4-64, 28x28x1, 5-way 1-shot,
            15 query per class, meta-batch 32; one meta-step per call.
Strategies (omniglot): conv = patches (im2col matmuls), winograd (Winograd
F(2x2, 3x3) matmuls; ``--only conv`` compares it with patches), xla (lax.conv)
or lax_vjp (lax.conv with canonical-convolution gradients); batch norm and
ReLU-max-pool with closed-form gradients (default) or by autodiff;
task_chunk = 1 (lax.map over tasks), c (map over chunks of c, vmap inside) or
vmap (all tasks at once). cpu_threads = 1 pins the process to one core.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def worker(spec: dict) -> dict:
    if spec.get("cpu_threads", 0) > 0:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: spec["cpu_threads"]])

    import jax
    import optax

    import metajax as mj
    import metajax.data as mjd

    if spec.get("cpu_streams", 1) != 1:  # split the CPU backend before anything runs; shard the tasks over it
        streams = mj.parallel.resolve_cpu_streams(spec["cpu_streams"], spec["meta_batch"])
        mj.parallel.use_cpu_streams(streams)
        if streams > 1:
            spec = {**spec, "devices": streams}
    if spec.get("host_streams", 1) > 1:  # split the host, but run on one device (what an idle split costs)
        mj.parallel.use_cpu_streams(spec["host_streams"])
    from metajax.models import mlp, mse_loss, resolve_conv_impl

    if spec["workload"] == "episodes":
        return episodes_worker(spec)
    if spec["workload"] == "evaluation":
        return evaluation_worker(spec)
    alg, k = spec["algorithm"], spec["k"]
    factories = {"maml": mj.maml, "fomaml": mj.fomaml, "reptile": mj.reptile, "imaml": mj.imaml}
    extra = {"gradient": spec["gradient"]} if spec.get("gradient") else {}
    if "score_query" in spec:  # Reptile only: skip the monitoring forward pass on the query batch
        extra["score_query"] = spec["score_query"]
    key = jax.random.PRNGKey(0)
    if spec["workload"] == "sinusoid":
        model = mlp()
        learner = factories[alg](mse_loss(model.apply), "sgd", k, inner_lr=0.01)
        ms = mj.make_meta_step(learner, optax.adam(1e-3) if alg != "reptile" else optax.sgd(0.1))
        steps = spec["steps_per_call"]
        fn = jax.jit(
            mj.make_train_loop(ms, lambda kk: mjd.sinusoid_tasks(kk, spec["meta_batch"], 10), steps),
            donate_argnums=(0, 1),
        )
        params = model.init(key)
        args = (params, ms.init(params), key)
    else:
        mesh = mj.parallel.make_mesh(spec["devices"]) if spec.get("devices") else None
        ms, params, tasks = omniglot_workload(spec, extra, mesh)
        fn = jax.jit(ms.step, donate_argnums=(0, 1))
        steps = 1
        args = (params, ms.init(params), tasks)
        if mesh is not None:
            args = (*mj.parallel.replicate(args[:2], mesh), mj.parallel.shard_tasks(tasks, mesh))
    from metajax import enable_compilation_cache
    from metajax.diagnostics import compilation_cache_events as cache_events

    use_cache = bool(spec.get("compile_cache"))
    if use_cache:  # a persistent cache directory: the first process compiles, later ones load
        enable_compilation_cache(spec["compile_cache"])
    t0 = time.perf_counter()
    with cache_events() as seen:
        compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    cached = ("hit" if seen["hits"] else "miss") if use_cache else None
    mem = compiled.memory_analysis()
    temp_mb = None if mem is None else round(mem.temp_size_in_bytes / 2**20, 1)
    from metajax.diagnostics import release_host_memory

    release_host_memory()  # as metajax train does after compiling

    def call(a):
        out = compiled(*a)
        jax.block_until_ready(out)
        return (out[0], out[1], a[2])

    state = {"args": call(args)}  # warm-up

    def timed():
        state["args"] = call(state["args"])

    extra = {"conv_resolved": resolve_conv_impl(spec["conv"])} if "conv" in spec else {}
    times = _median_times(timed, spec["repeats"])
    return _result(spec, times, steps, compile_s, temp_mb, compile_cache=cached, **extra)


def omniglot_workload(spec: dict, extra: dict | None = None, mesh=None):
    """The Omniglot-shaped benchmark step: (meta_step, params, tasks) for a worker spec.

    Conv4-64 on synthetic 28x28x1 images, 5-way 1-shot with 15 queries per
    class, ``spec["meta_batch"]`` tasks; ``extra`` holds learner options
    (``gradient``, ``score_query``).
    """
    import jax
    import optax

    import metajax as mj
    from metajax.models import conv4, cross_entropy_loss

    alg, k = spec["algorithm"], spec["k"]
    factories = {"maml": mj.maml, "fomaml": mj.fomaml, "reptile": mj.reptile, "imaml": mj.imaml}
    key = jax.random.PRNGKey(0)
    model = conv4(ways=5, filters=64, image_size=28, conv=spec["conv"], closed_form=spec.get("closed_form", True))
    chunk = None if spec["task_chunk"] == "vmap" else int(spec["task_chunk"])
    learner = factories[alg](
        cross_entropy_loss(model.apply),
        "sgd",
        k,
        inner_lr=0.1 if alg == "imaml" else 0.4,
        has_aux=True,
        task_chunk=chunk,
        **(extra or {}),
    )
    ms = mj.make_meta_step(learner, optax.adam(1e-3) if alg != "reptile" else optax.sgd(1.0), mesh=mesh)
    return ms, model.init(key), synthetic_tasks(key, spec["meta_batch"], 1)


def synthetic_tasks(key, num_tasks: int, shots: int):
    """Omniglot-shaped 5-way tasks of uniform-noise 28x28x1 images: ``shots`` and 15 queries per class."""
    import jax
    import jax.numpy as jnp

    import metajax as mj

    ks, kq = jax.random.split(key)
    return mj.Task(
        (
            jax.random.uniform(ks, (num_tasks, 5 * shots, 28, 28, 1)),
            jnp.tile(jnp.repeat(jnp.arange(5), shots), (num_tasks, 1)),
        ),
        (jax.random.uniform(kq, (num_tasks, 75, 28, 28, 1)), jnp.tile(jnp.repeat(jnp.arange(5), 15), (num_tasks, 1))),
    )


def worker_command(tree: Path | None = None) -> list[str]:
    """The command that runs one benchmark worker: this file's, or the harness of another checkout ``tree``.

    Checkouts from before the harness moved into ``benchmarks/`` kept it inside the package, as a private module.
    """
    script = Path(__file__).resolve() if tree is None else Path(tree) / "benchmarks" / "harness.py"
    if script.is_file():
        return [sys.executable, str(script), "--worker"]
    return [sys.executable, "-m", "metajax._src.bench", "--worker"]


def run_worker(
    spec: dict, *, env: dict | None = None, cwd=None, timeout: float | None = None, tree: Path | None = None
) -> dict:
    """Run :func:`worker` on ``spec`` in a fresh process (:func:`worker_command`; ``tree``: another checkout's).

    Returns its result, or ``{**spec, "error": ...}`` (the last stderr line) when it failed.
    """
    proc = subprocess.run(
        [*worker_command(tree), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1][len("RESULT ") :])


def _median_times(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _result(spec: dict, times: list[float], per_call: int, compile_s: float, temp_mb, **extra) -> dict:
    import resource
    import statistics

    import jax

    from metajax.diagnostics import current_rss_mb

    med = statistics.median(times)
    steady = current_rss_mb()
    return {
        **spec,
        "median_s_per_call": med,
        "times_s": times,
        "it_per_s": per_call / med,
        "s_per_it": med / per_call,
        "compile_s": compile_s,
        "xla_temp_mb": temp_mb,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "steady_rss_mb": None if steady is None else round(steady, 1),
        "backend": jax.default_backend(),
        **extra,
    }


def episodes_worker(spec: dict) -> dict:
    """Episodes/s of the on-device sampler on an Omniglot-sized uint8 array (4,400 classes x 20 x 28 x 28)."""
    import statistics

    import jax
    import jax.numpy as jnp

    from metajax.data import sample_episodes

    images = jax.random.randint(jax.random.PRNGKey(0), (4400, 20, 28, 28), 0, 256).astype(jnp.uint8)
    batch, calls = spec["meta_batch"], spec["calls_per_run"]

    @jax.jit
    def many(key):
        def body(acc, k):
            t = sample_episodes(k, images, batch, spec["ways"], spec["shots"], spec["queries"])
            return acc + t.support[0][0, 0, 0, 0, 0] + t.query[0][-1, -1, 0, 0, 0], None

        return jax.lax.scan(body, jnp.zeros(()), jax.random.split(key, calls))[0]

    t0 = time.perf_counter()
    jax.block_until_ready(many(jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - t0
    keys = iter(range(2, 2 + spec["repeats"]))
    times = _median_times(lambda: jax.block_until_ready(many(jax.random.PRNGKey(next(keys)))), spec["repeats"])
    episodes_per_s = calls * batch / statistics.median(times)
    return _result(spec, times, calls, compile_s, None, episodes_per_s=episodes_per_s, algorithm="sampler", k=0)


def evaluation_worker(spec: dict) -> dict:
    """Few-shot evaluation: adapt each of ``num_tasks`` Omniglot-shaped tasks and score its queries.

    ``k`` inner steps of ``inner`` (sgd: MAML's protocol; adam: Reptile's, on minibatches of 10), tasks on
    ``devices`` devices (the CPU task streams the worker split the host into, or one); "it" = one task.
    """
    import jax

    import metajax as mj
    from metajax.evaluation import adaptation_scorer
    from metajax.models import conv4, cross_entropy_loss, cross_entropy_query_loss

    devices = spec.get("eval_streams", 1)
    if devices > 1:
        mj.parallel.use_cpu_streams(devices)
    model = conv4(ways=5, filters=64, image_size=28, conv=spec["conv"])
    adam = spec["inner"] == "adam"
    learner = (mj.reptile if adam else mj.maml)(
        cross_entropy_loss(model.apply), spec["inner"], spec["k"], inner_lr=1e-3 if adam else 0.4, has_aux=True
    )
    t, key = spec["num_tasks"], jax.random.PRNGKey(0)
    tasks = synthetic_tasks(key, t, spec["shots"])
    mesh = mj.parallel.make_mesh(devices)
    score = adaptation_scorer(learner, cross_entropy_query_loss(model.apply), spec["k"], 1, 10 if adam else None, mesh)
    params = learner.init(model.init(key))
    t0 = time.perf_counter()
    jax.block_until_ready(score(params, tasks))
    first_s = time.perf_counter() - t0
    times = _median_times(lambda: jax.block_until_ready(score(params, tasks)), spec["repeats"])
    compile_s = max(first_s - min(times), 0.0)
    return _result(spec, times, t, compile_s, None, meta_batch=t, algorithm=f"eval-{spec['inner']}")


def variants(full: bool, only: str | None) -> list[dict]:
    out = []
    if only in (None, "sinusoid"):
        for alg, k in (("maml", 1), ("fomaml", 1), ("reptile", 5), ("maml", 5)):
            for threads in (1, 0):
                out.append(
                    {
                        "workload": "sinusoid",
                        "algorithm": alg,
                        "k": k,
                        "meta_batch": 25,
                        "cpu_threads": threads,
                        "steps_per_call": 500,
                        "repeats": 7 if full else 5,
                    }
                )
    if only in (None, "episodes"):
        for ways, shots, queries, batch in ((5, 1, 15, 32), (20, 5, 15, 16)):
            out.append(
                {
                    "workload": "episodes",
                    "ways": ways,
                    "shots": shots,
                    "queries": queries,
                    "meta_batch": batch,
                    "calls_per_run": 100,
                    "repeats": 5,
                    "cpu_threads": 0,
                }
            )
    if only in (None, "omniglot"):
        reps = 5 if full else 3
        base = {"workload": "omniglot", "meta_batch": 32, "cpu_threads": 0, "repeats": reps}
        for alg, k in (("maml", 1), ("fomaml", 1), ("maml", 5), ("fomaml", 5), ("reptile", 5)):
            # the defaults of `metajax train` (one CPU task stream per core), then one program over all tasks
            out.append({**base, "algorithm": alg, "k": k, "conv": "auto", "task_chunk": 1, "cpu_streams": 0})
            out.append({**base, "algorithm": alg, "k": k, "conv": "auto", "task_chunk": 1})
        # (conv, task_chunk, closed-form batch-norm/pool gradients)
        strategies = [("patches", 1, False), ("lax_vjp", 1, True), ("patches", "vmap", True), ("patches", 4, True)]
        strategies += [("xla", 1, True)]
        if full:
            strategies += [("patches", 8, True), ("patches", 16, True)]
        for conv, chunk, closed in strategies:
            pairs = (("maml", 1), ("fomaml", 1), ("maml", 5)) if full else (("maml", 1),)
            if conv == "lax_vjp" or not closed:
                pairs += (("reptile", 5),)
            for alg, k in pairs:
                out.append(
                    {
                        **base,
                        "algorithm": alg,
                        "k": k,
                        "conv": conv,
                        "task_chunk": chunk,
                        "closed_form": closed,
                        "repeats": 1 if conv == "xla" else reps,
                    }
                )
    if only == "conv":
        # im2col against Winograd F(2x2, 3x3), each algorithm's pair back to back (ratios within a pair)
        for alg, k in (("maml", 1), ("fomaml", 1), ("maml", 5), ("fomaml", 5), ("reptile", 5)):
            for conv in ("patches", "winograd"):
                spec = {"workload": "omniglot", "meta_batch": 32, "cpu_threads": 0, "repeats": 5 if full else 3}
                out.append({**spec, "algorithm": alg, "k": k, "conv": conv, "task_chunk": 1, "closed_form": True})
    if only == "streams":
        # one program over all tasks against the host split into CPU task streams (cpu_streams=0: one per
        # core), each algorithm's pair back to back (ratios within a pair)
        for alg, k in (("maml", 1), ("fomaml", 1), ("maml", 5), ("fomaml", 5), ("reptile", 5), ("imaml", 5)):
            for streams in (1, 0):
                spec = {"workload": "omniglot", "meta_batch": 32, "cpu_threads": 0, "repeats": 5 if full else 3}
                out.append({**spec, "algorithm": alg, "k": k, "conv": "auto", "task_chunk": 1, "cpu_streams": streams})
    if only == "eval_streams":
        # evaluation on one device against the host split into one CPU stream per core (pairs back to back),
        # and a training step on one device with the host split or not (what an idle stream costs)
        from metajax.parallel import available_cores as _cores

        for inner, k, shots in (("sgd", 3, 1), ("sgd", 3, 5), ("adam", 50, 5)):
            for streams in (1, max(2, _cores())):
                out.append(
                    {
                        "workload": "evaluation",
                        "inner": inner,
                        "k": k,
                        "shots": shots,
                        "num_tasks": 40,
                        "conv": "auto",
                        "eval_streams": streams,
                        "cpu_threads": 0,
                        "repeats": 5 if full else 3,
                    }
                )
        for alg, k, t in (("reptile", 5, 5), ("maml", 1, 32)):
            for host in (1, 2):
                spec = {"workload": "omniglot", "algorithm": alg, "k": k, "meta_batch": t, "conv": "auto"}
                out.append(
                    {**spec, "task_chunk": 1, "cpu_threads": 0, "repeats": 5 if full else 3, "host_streams": host}
                )
    if only == "malloc":
        # glibc's malloc with transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) against its default,
        # at the defaults of `metajax train`; two alternating rounds of every pair (ratios within a round)
        for _round in range(2):
            for alg, k in (("maml", 1), ("fomaml", 1), ("maml", 5), ("fomaml", 5), ("reptile", 5)):
                for malloc in ("default", "hugetlb"):
                    spec = {"workload": "omniglot", "meta_batch": 32, "cpu_threads": 0, "repeats": 5 if full else 3}
                    spec.update(algorithm=alg, k=k, conv="auto", task_chunk=1, cpu_streams=0, malloc=malloc)
                    out.append(spec)
    if only == "devices":
        # simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count): the sharded code path's
        # overhead, not a speed-up (all "devices" share this machine's cores)
        for n in (1, 2, 4, 8):
            for alg in ("maml", "fomaml"):
                spec = {"workload": "omniglot", "algorithm": alg, "k": 1, "meta_batch": 32, "conv": "auto"}
                out.append({**spec, "task_chunk": 1, "cpu_threads": 0, "repeats": 3, "devices": n})
    if only == "grid":
        # cost against k and meta-batch for every algorithm, at the default strategy (conv and task batching "auto")
        algs = [("maml", None), ("maml", "exact_remat"), ("fomaml", None), ("reptile", None), ("imaml", None)]
        for alg, grad in algs:
            for k in (1, 5, 10, 50):
                for t in (4, 16, 32):
                    spec = {"workload": "omniglot", "algorithm": alg, "k": k, "meta_batch": t, "conv": "auto"}
                    spec.update({"task_chunk": 1, "cpu_threads": 0, "repeats": 3 if full else 2})
                    if grad:
                        spec["gradient"] = grad
                    out.append(spec)
    return out


def plot_grid(results: list[dict], path: Path) -> None:
    """s/meta-iteration against k (one panel per meta-batch), one line per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r and r["workload"] == "omniglot"]
    batches = sorted({r["meta_batch"] for r in ok})
    if not batches:
        return
    fig, axes = plt.subplots(2, len(batches), figsize=(4.2 * len(batches), 7), squeeze=False)
    names = sorted({algo_name(r) for r in ok})
    for j, t in enumerate(batches):
        for name in names:
            rows = sorted((r for r in ok if r["meta_batch"] == t and algo_name(r) == name), key=lambda r: r["k"])
            if rows:
                ks = [r["k"] for r in rows]
                axes[0][j].plot(ks, [r["s_per_it"] for r in rows], "o-", label=name)
                axes[1][j].plot(ks, [r["peak_rss_mb"] for r in rows], "o-", label=name)
        axes[0][j].set_title(f"meta-batch {t}")
        for i, ylabel in enumerate(("s / meta-iteration", "peak RSS (MB)")):
            axes[i][j].set_xscale("log")
            axes[i][j].set_yscale("log")
            axes[i][j].set_xlabel("inner steps k")
            axes[i][j].set_ylabel(ylabel)
            axes[i][j].grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    # Say what ran, from the results themselves (conv="auto" resolves per platform and per call site).
    convs = sorted({f"conv={r['conv']}" + (f" ({r['conv_resolved']})" if r.get("conv_resolved") else "") for r in ok})
    chunks = sorted({str(r.get("task_chunk", 1)) for r in ok})
    backends = sorted({str(r.get("backend", "?")) for r in ok})
    fig.suptitle(
        "Omniglot-shaped Conv4 (5-way 1-shot, 15 queries) on "
        + ", ".join(backends)
        + f": {', '.join(convs)}, tasks in lax.map, chunk {'/'.join(chunks)}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def algo_name(r: dict) -> str:
    return r["algorithm"] + (" (remat)" if r.get("gradient") == "exact_remat" else "")


def write_results(out: Path | str, suffix: str, payload: dict, md: str, *, config=None, data_dir=None) -> str:
    """``<out>/<timestamp>-<suffix>.json`` (``payload`` with its ``"provenance"``: benchmarks/provenance.py) and
    ``.md`` (``md``), print ``md``; returns the stamp. ``config``: the parsed arguments (default: the payload's
    ``"args"``); ``data_dir``: the data directory in use (recorded as ``$DATA_DIR``, never as a local path)."""
    from provenance import portable, provenance

    where = Path(out)
    where.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    config = payload.get("args") if config is None else config
    prov = provenance(config=config, data_dir=data_dir)
    payload = {**portable(payload, data_dir), "provenance": prov}
    (where / f"{stamp}-{suffix}.json").write_text(json.dumps(payload, indent=1))
    (where / f"{stamp}-{suffix}.md").write_text(md)
    print(md)
    return stamp


def machine() -> dict:
    """The short machine record a results file's tables print (the full one is its ``"provenance"``)."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax
    import optax

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "os": platform.platform(),
    }


def label(r: dict) -> str:
    if r["workload"] == "episodes":
        return f"{r['ways']}-way {r['shots']}-shot, {r['queries']} queries: {r['episodes_per_s']:.0f} episodes/s"
    if r["workload"] == "sinusoid":
        return f"{'1 core' if r['cpu_threads'] == 1 else 'all cores'}"
    if r["workload"] == "evaluation":
        streams = r.get("eval_streams", 1)
        where = "one device" if streams == 1 else f"{streams} CPU task streams"
        return f"{r['num_tasks']} tasks, {r['shots']}-shot, {r['k']} {r['inner']} steps, {where} (it = one task)"
    conv = r["conv"] if r["conv"] != "auto" or "conv_resolved" not in r else f"auto ({r['conv_resolved']})"
    text = f"conv={conv}, tasks={'vmap' if r['task_chunk'] == 'vmap' else 'map/' + str(r['task_chunk'])}"
    if not r.get("closed_form", True):
        text += ", autodiff BN/pool"
    if r.get("malloc"):
        text += f", malloc={r['malloc']}"
    if r.get("cpu_streams", 1) != 1:
        return text + f", cpu_streams={r['cpu_streams']} ({r.get('devices') or 1} devices)"
    if r.get("host_streams", 1) > 1:
        return text + f", one device of the host split into {r['host_streams']}"
    return text + (f", {r['devices']} devices" if r.get("devices") else "")


def _with_tunable(tunables: str, item: str) -> str:
    """``GLIBC_TUNABLES`` (colon-separated ``name=value``) with ``item`` added or replacing its own name."""
    name = item.split("=")[0]
    kept = [t for t in tunables.split(":") if t and t.split("=")[0] != name]
    return ":".join([*kept, item])


def table(results: list[dict]) -> str:
    lines = [
        "| workload | algorithm | k | meta-batch | strategy | s / meta-iter (median) | meta-iter/s | compile s | "
        "XLA temp MB | peak RSS MB | steady RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['workload']} | {algo_name(r)} | {r['k']} | {r.get('meta_batch', '')} | {label(r)} | "
                f"failed: {r['error']} | | | | | |"
            )
            continue
        lines.append(
            f"| {r['workload']} | {algo_name(r)} | {r['k']} | {r.get('meta_batch', '')} | {label(r)} | "
            f"{r['s_per_it']:.4g} | "
            f"{r['it_per_s']:.4g} | {r['compile_s']:.1f} | {r['xla_temp_mb']} | {r['peak_rss_mb']:.0f} | "
            f"{r.get('steady_rss_mb') or ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="metajax bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="more strategies and repeats")
    parser.add_argument(
        "--only",
        choices=["sinusoid", "episodes", "omniglot", "grid", "devices", "conv", "streams", "eval_streams", "malloc"],
        help="one workload; not in the default run: 'conv' compares im2col and Winograd convolutions "
        "(5 algorithm pairs, ~6 min); 'grid' times every algorithm x k in {1,5,10,50} x "
        "meta-batch in {4,16,32} and plots cost against k; 'devices' runs the sharded meta-step on 1-8 "
        "simulated CPU devices; 'streams' compares one program over all tasks with the host split into one "
        "CPU task stream per core (6 algorithm pairs, ~8 min); 'eval_streams' times few-shot evaluation on one "
        "device against the CPU task streams, and a training step on one device of a split host; 'malloc' "
        "compares glibc's malloc with transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) against its "
        "default (5 algorithm pairs, 2 rounds, ~12 min)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per variant")
    default_out = Path("benchmarks/results") if Path("benchmarks").is_dir() else Path("bench-results")
    parser.add_argument("--out", default=str(default_out), help=f"results directory (default {default_out})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    specs = variants(args.full, args.only)
    results = []
    info = machine()
    from provenance import code_commit, provenance

    code = code_commit()  # the code as it was when the run began
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")

    def write() -> str:
        """The results so far (rewritten after every variant: an interrupted run keeps what it measured)."""
        done = "" if len(results) == len(specs) else f" (partial: {len(results)} of {len(specs)} variants)"
        (out / f"{stamp}.json").write_text(
            json.dumps(
                {
                    "machine": info,
                    "complete": not done,
                    "results": results,
                    "provenance": provenance(argv=argv, config=vars(args), code=code),
                },
                indent=1,
            )
        )
        md = (
            f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, jax {info['jax']}, "
            f"optax {info['optax']}{done}.\n\n" + table(results)
        )
        (out / f"{stamp}.md").write_text(md)
        return md

    for i, spec in enumerate(specs):
        print(f"[{i + 1}/{len(specs)}] {json.dumps(spec)}", file=sys.stderr, flush=True)
        try:
            env = dict(os.environ)
            if spec.get("malloc") == "hugetlb":
                env["GLIBC_TUNABLES"] = _with_tunable(env.get("GLIBC_TUNABLES", ""), "glibc.malloc.hugetlb=1")
            if spec.get("devices"):
                env["XLA_FLAGS"] = (
                    f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={spec['devices']}"
                )
            results.append(run_worker(spec, env=env, timeout=args.timeout))
        except subprocess.TimeoutExpired:
            results.append({**spec, "error": f"timeout after {args.timeout:.0f} s"})
        r = results[-1]
        print(
            "   "
            + (
                r.get("error")
                or f"{r['s_per_it']:.4g} s/it, compile {r['compile_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
            ),
            file=sys.stderr,
            flush=True,
        )
        md = write()
    if args.only == "grid":
        plot_grid(results, out / f"{stamp}-grid.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
