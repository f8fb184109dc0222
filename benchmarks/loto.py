"""Leave-one-task-out / leave-one-alphabet-out: does the risk-inflation ratio flag memorisation?

    python benchmarks/loto.py                      # sinusoid, ~10 min on 2 cores
    python benchmarks/loto.py --workload omniglot --data-dir DIR   # ~15 min

Sinusoid: MAML (1 inner SGD step, alpha = 0.01, Adam 1e-3, meta-batch 4,
3,000 steps) with a large MLP (1-200-200-1) on a pool of 5 sinusoid tasks,
and on a pool of 50: with few tasks the learner can memorise them, so its
post-adaptation risk on the left-out task is far above its risk on the tasks
it trained on. With 50 tasks, 10 folds (tasks 0, 5, ..., 45) are run: the
mean held-out risk over a subset of folds is an unbiased estimate of the
all-fold mean.

Omniglot (leave one alphabet out): MAML 5-way 1-shot (1 inner SGD step,
alpha = 0.4, Adam 1e-3, meta-batch 8, 5 queries per class) with Conv4-16 on
the 30 background alphabets of the Vinyals split (with rotations as new
classes), each fold meta-trained on the other alphabets; against the same on
a pool of only 5 of those alphabets, without rotations (4 alphabets and
about 100 characters to train on per fold). Risk: query cross-entropy after
adaptation, mean over 200 fresh episodes of the left-out alphabet ("held
out") or of the fold's own training classes ("seen").
"""

import argparse
import sys
import time

import jax
import numpy as np
import optax

import metajax as mj
from metajax import diagnostics


def sinusoid_rows() -> None:
    import metajax.data as mjd
    from metajax.models import mlp, mse_loss

    print("| pool | folds | model | held-out risk | seen risk | ratio (95% bootstrap CI) | wall s |")
    print("|---|---|---|---|---|---|---|")
    for n in (5, 50):
        t = time.time()
        model = mlp(hidden=(200, 200))
        pool = mjd.sinusoid_tasks(jax.random.PRNGKey(1), n, 10)
        learner = mj.maml(mse_loss(model.apply), "sgd", 1, inner_lr=0.01)
        folds = list(range(0, n, max(1, n // 10)))
        r = diagnostics.loto(
            learner,
            optax.adam(1e-3),
            model.init(jax.random.PRNGKey(0)),
            pool,
            3000,
            4,
            jax.random.PRNGKey(2),
            folds=folds,
        )
        lo, hi = r["ratio_ci"]
        print(
            f"| {n} tasks | {len(folds)} | 1-200-200-1 | {r['held_out'].mean():.3f} | {r['seen'].mean():.3f} | "
            f"{r['ratio']:.2f} ({lo:.2f}-{hi:.2f}) | {time.time() - t:.0f} |",
            flush=True,
        )


def omniglot_rows(data_dir: str | None, steps: int, filters: int) -> None:
    from metajax.data import load_omniglot
    from metajax.models import conv4, cross_entropy_loss

    rotated = load_omniglot(data_dir, split="vinyals", rotations=True)["train"]
    plain = load_omniglot(data_dir, split="vinyals", rotations=False)["train"]
    alphabets = np.unique(plain.alphabet)
    small = np.isin(plain.alphabet, alphabets[:5])
    pools = {
        f"{alphabets.size} alphabets, rotations ({rotated.images.shape[0]} classes)": (
            rotated.images,
            rotated.alphabet,
        ),
        f"5 alphabets, no rotations ({int(small.sum())} classes)": (plain.images[small], plain.alphabet[small]),
    }
    model = conv4(ways=5, filters=filters, image_size=28)
    learner = mj.maml(cross_entropy_loss(model.apply), "sgd", 1, inner_lr=0.4, has_aux=True)
    init = model.init(jax.random.PRNGKey(0))
    print(
        "| pool | folds | held-out risk | seen risk | ratio (95% bootstrap CI) | ratio at init | wall s |\n"
        "|---|---|---|---|---|---|---|"
    )
    for name, (images, groups) in pools.items():
        t = time.time()
        r = diagnostics.leave_one_group_out(
            learner,
            optax.adam(1e-3),
            init,
            images,
            groups,
            ways=5,
            shots=1,
            queries=5,
            num_steps=steps,
            meta_batch_size=8,
            key=jax.random.PRNGKey(2),
            eval_tasks=200,
            folds=np.unique(groups)[:: max(1, np.unique(groups).size // 10)],
        )
        lo, hi = r["ratio_ci"]
        init_ratio = r["before_held_out"].mean() / r["before_seen"].mean()
        print(
            f"| {name} | {len(r['groups'])} | {r['held_out'].mean():.3f} | {r['seen'].mean():.3f} | "
            f"{r['ratio']:.2f} ({lo:.2f}-{hi:.2f}) | {init_ratio:.2f} | {time.time() - t:.0f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["sinusoid", "omniglot"], default="sinusoid")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory holding omniglot/3.0.0 (omniglot)")
    parser.add_argument("--steps", type=int, default=1000, help="meta-steps per fold (omniglot)")
    parser.add_argument("--filters", type=int, default=16, help="Conv4 width (omniglot)")
    args = parser.parse_args(argv)
    if args.workload == "sinusoid":
        sinusoid_rows()
    else:
        omniglot_rows(args.data_dir, args.steps, args.filters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
