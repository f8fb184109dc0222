"""How far are float32 meta-gradients from float64 ones, task by task, and why? metajax beside PyTorch.

    python benchmarks/float32_accuracy.py --data-dir DIR                      # metajax only (~6 min)
    python benchmarks/float32_accuracy.py --data-dir DIR --torch-python PY    # and PyTorch beside it (~12 min)

The Omniglot workload (Conv4-64, 5-way 1-shot, 15 queries per class, inner rate 0.4): for each seed, weights from
``conv4(...).init(PRNGKey(seed))`` and ``--tasks`` episodes of the Omniglot training split (uniform noise images
thresholded to 0/1 without ``--data-dir``: black-and-white like Omniglot). The reference is metajax's meta-gradient
in float64 on the same float32 weights and images (``jax_enable_x64``); each task's float32 meta-gradient
(metajax; PyTorch's with ``--torch-python``, a Python that has torch: benchmarks/torch_meta_gradients.py) is compared
with it: error = largest absolute difference / largest absolute entry of the reference, and 1 - cosine.

Where the float32 error comes from, for one inner step (k = 1; everything in float64 but the one part): the
support gradient is computed in float32 (with the ``patches`` convolution, whatever ``--conv``), the weights
adapted with it, and the query gradient at those weights
compared with the float64 one, (a) to first order (a JVP: what the error would be if the query gradient were
smooth there, column ``linear inner-error prediction``) and (b) exactly. A task is *at a kink* when (b) exceeds
30x (a): float32 rounding of the adapted weights moved an activation across a ReLU or max-pool switch, where the
meta-gradient itself jumps. No float32 implementation avoids that; which library hits it depends on which tasks
lie close to a switch, so the medians over tasks are the comparison, and the maxima say how large a jump is.
Results go to ``benchmarks/results/DATE-float32.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KINK_FACTOR = 30.0


def _flat(tree) -> dict[str, np.ndarray]:
    import jax

    out = {}
    for path, v in jax.tree_util.tree_leaves_with_path(tree):
        keys = [str(getattr(q, "key", q)) for q in path]
        out["p:" + "/".join(keys[1:] if keys[0] == "params" else keys)] = np.asarray(v, np.float64)
    return out


def _error(g: dict[str, np.ndarray], ref: dict[str, np.ndarray], t: int) -> tuple[float, float]:
    """Task ``t``'s (max |g - ref| / max |ref|, 1 - cosine): device_check's comparison on one task's slice."""
    from device_check import compare

    return compare({n: g[n][t] for n in ref}, {n: ref[n][t] for n in ref})


def _task_max(tree: dict[str, np.ndarray], t: int) -> float:
    """max |x| over task ``t``'s slice of every leaf."""
    return max(float(np.max(np.abs(v[t]))) for v in tree.values())


def _tasks(args, seed: int, images):
    import jax
    import jax.numpy as jnp

    import metajax as mj
    from metajax.data import sample_episodes

    key = jax.random.PRNGKey(10_000 + seed)
    if images is not None:
        return sample_episodes(key, images, args.tasks, ways=5, shots=1, queries=15)
    ks, kq = jax.random.split(key)

    def part(k, n):
        x = (jax.random.uniform(k, (args.tasks, 5 * n, 28, 28, 1)) > 0.7).astype(jnp.float32)
        return x, jnp.tile(jnp.repeat(jnp.arange(5, dtype=jnp.int32), n), (args.tasks, 1))

    return mj.Task(part(ks, 1), part(kq, 15))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="an Omniglot data directory (else black-and-white noise images)")
    parser.add_argument("--seeds", type=int, default=6, help="weight initialisations (default 6)")
    parser.add_argument("--tasks", type=int, default=4, help="tasks per seed (default 4)")
    parser.add_argument(
        "--algorithms", default="maml:1,fomaml:1,maml:2", help="ALG:K list (default maml:1,fomaml:1,maml:2)"
    )
    parser.add_argument("--conv", default="patches", help="metajax's convolution implementation (default patches)")
    parser.add_argument("--torch-python", help="a Python with torch: adds the PyTorch columns")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    specs = []
    for item in args.algorithms.split(","):
        alg, _, k = item.partition(":")
        if alg not in ("maml", "fomaml") or not k.isdigit() or int(k) < 1:
            parser.error(f"--algorithms takes maml:K or fomaml:K items, got {item!r}")
        specs.append((alg, int(k)))

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import metajax as mj
    from metajax.models import conv4, cross_entropy_loss

    sys.path.insert(0, str(HERE))
    from harness import machine, write_results

    images = None
    if args.data_dir:
        from metajax.data import load_omniglot

        images = jnp.asarray(load_omniglot(args.data_dir)["train"].images)
    model = conv4(ways=5, filters=64, image_size=28, conv=args.conv)
    loss = cross_entropy_loss(model.apply)

    analysis = conv4(ways=5, filters=64, image_size=28, conv="patches")  # forward-mode differentiable

    def plain_loss(p, x, y):
        return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(analysis.apply(p, x)), y[:, None], axis=1))

    def cast(tree, dtype):
        return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    directions = {}
    for alg, k in specs:
        learner = {"maml": mj.maml, "fomaml": mj.fomaml}[alg](loss, "sgd", k, inner_lr=0.4, has_aux=True)
        directions[alg, k] = jax.jit(
            jax.vmap(lambda p, t, learner=learner: learner.task_direction(learner.init(p), t)[0], in_axes=(None, 0))
        )

    @jax.jit
    def linear_inner_error(p64, task):
        """The first-order effect of the float32 support gradient's error on the task's query gradient (k = 1)."""
        (sx, sy), (qx, qy) = task

        def query_grad(theta):
            return jax.grad(plain_loss)(theta, qx, qy)

        g64 = jax.grad(plain_loss)(p64, sx, sy)
        g32 = cast(jax.grad(plain_loss)(cast(p64, jnp.float32), sx.astype(jnp.float32), sy), jnp.float64)
        theta = jax.tree.map(lambda a, b: a - 0.4 * b, p64, g64)
        delta = jax.tree.map(lambda a, b: -0.4 * (a - b), g32, g64)
        ref, linear = jax.jvp(query_grad, (theta,), (delta,))
        actual = jax.tree.map(lambda a, b: a - b, query_grad(jax.tree.map(jnp.add, theta, delta)), ref)
        return linear, actual, ref

    rows = []
    with tempfile.TemporaryDirectory(prefix="metajax-f32-") as tmp:
        for seed in range(args.seeds):
            params = model.init(jax.random.PRNGKey(seed))
            tasks = cast(_tasks(args, seed, images), jnp.float32)
            p64, t64 = cast(params, jnp.float64), cast(tasks, jnp.float64)
            npz = Path(tmp) / f"in-{seed}.npz"
            np.savez(
                npz,
                xs=np.asarray(tasks.support[0]),
                ys=np.asarray(tasks.support[1]),
                xq=np.asarray(tasks.query[0]),
                yq=np.asarray(tasks.query[1]),
                **{n: v.astype(np.float32) for n, v in _flat(params).items()},
            )
            linear, actual, query = (_flat(x) for x in jax.vmap(linear_inner_error, in_axes=(None, 0))(p64, t64))
            inner = {}
            for t in range(args.tasks):
                lin, act = (_task_max(x, t) / _task_max(query, t) for x in (linear, actual))
                inner[t] = {"inner_linear": lin, "inner_actual": act, "kink": bool(act > KINK_FACTOR * lin)}
            for alg, k in specs:
                ref = _flat(directions[alg, k](p64, t64))
                ours = _flat(directions[alg, k](params, tasks))
                theirs = theirs64 = None
                if args.torch_python:
                    got = {}
                    for dt in ("float32", "float64"):
                        out = Path(tmp) / f"torch-{seed}-{alg}-{k}-{dt}.npz"
                        cmd = [args.torch_python, str(HERE / "torch_meta_gradients.py"), str(npz), str(out)]
                        cmd += ["--k", str(k), "--algorithm", alg, "--dtype", dt]
                        subprocess.run(cmd, check=True)
                        got[dt] = {n: v.astype(np.float64) for n, v in np.load(out).items()}
                    theirs, theirs64 = got["float32"], got["float64"]
                for t in range(args.tasks):
                    err, cos = _error(ours, ref, t)
                    row = {"seed": seed, "task": t, "algorithm": alg, "k": k, "metajax_err": err, "metajax_1mcos": cos}
                    if k == 1:
                        row.update(inner[t])
                    if theirs is not None:
                        row["torch_err"], row["torch_1mcos"] = _error(theirs, ref, t)
                        row["torch64_vs_metajax64"] = _error(theirs64, ref, t)[0]
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)

    info = machine()
    data = f"Omniglot training-split episodes ({args.data_dir})" if args.data_dir else "black-and-white noise images"
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, jax {info['jax']}.",
        "",
        f"Conv4-64 5-way 1-shot, 15 queries, inner rate 0.4, conv={args.conv}; {args.seeds} seeds x {args.tasks} tasks "
        f"of {data}. Error = max |float32 - float64| / max |float64| per task (float64 = metajax with jax_enable_x64 "
        "on the same weights and images).",
        "",
    ]
    head = "| algorithm | k | metajax median | metajax max | metajax median 1-cos |"
    sep = "|---|---|---|---|---|"
    if args.torch_python:
        head += " PyTorch median | PyTorch max | PyTorch median 1-cos | PyTorch f64 vs metajax f64 (max) |"
        sep += "---|---|---|---|"
    head += " tasks at a kink (metajax) | median error of the others | linear inner-error prediction (median) |"
    sep += "---|---|---|"
    lines += [head, sep]
    for alg, k in specs:
        rs = [r for r in rows if r["algorithm"] == alg and r["k"] == k]
        med = statistics.median
        line = f"| {alg} | {k} | {med(r['metajax_err'] for r in rs):.1e} | {max(r['metajax_err'] for r in rs):.1e} | "
        line += f"{med(r['metajax_1mcos'] for r in rs):.1e} |"
        if args.torch_python:
            line += f" {med(r['torch_err'] for r in rs):.1e} | {max(r['torch_err'] for r in rs):.1e} | "
            line += f"{med(r['torch_1mcos'] for r in rs):.1e} | {max(r['torch64_vs_metajax64'] for r in rs):.1e} |"
        if k == 1:
            smooth = [r["metajax_err"] for r in rs if not r["kink"]]
            line += f" {sum(r['kink'] for r in rs)} of {len(rs)} | {med(smooth) if smooth else float('nan'):.1e} | "
            line += f"{med(r['inner_linear'] for r in rs):.1e} |"
        else:
            line += " - | - | - |"
        lines.append(line)
    meta = {"machine": info, "data": data, "conv": args.conv, "seeds": args.seeds, "tasks": args.tasks}
    write_results(
        args.out, "float32", {**meta, "rows": rows}, "\n".join(lines) + "\n", config=args, data_dir=args.data_dir
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
