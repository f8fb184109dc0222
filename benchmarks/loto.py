"""Leave-one-task-out: does the risk-inflation ratio flag memorisation? (seed 000)

    python benchmarks/loto.py     # ~10 min on 2 cores; prints the table in benchmarks/README.md

MAML (1 inner SGD step, alpha = 0.01, Adam 1e-3, meta-batch 4, 3,000 steps)
with a large MLP (1-200-200-1) on a pool of 5 sinusoid tasks, and on a pool
of 50: with few tasks the learner can memorise them, so its post-adaptation
risk on the left-out task is far above its risk on the tasks it trained on.
With 50 tasks, 10 folds (tasks 0, 5, ..., 45) are run: the mean held-out risk
over a subset of folds is an unbiased estimate of the all-fold mean.
"""

import sys
import time

import jax
import optax

import metajax as mj
from metajax._src import loto
from metajax._src.data import sinusoid
from metajax._src.models import mlp, mse_loss


def main() -> int:
    print("| pool | folds | model | held-out risk | seen risk | ratio (95% bootstrap CI) | wall s |")
    print("|---|---|---|---|---|---|---|")
    for n in (5, 50):
        t = time.time()
        model = mlp(hidden=(200, 200))
        pool = sinusoid.sample_tasks(jax.random.PRNGKey(1), n, 10)
        learner = mj.maml(mse_loss(model.apply), "sgd", 1, inner_lr=0.01)
        folds = list(range(0, n, max(1, n // 10)))
        r = loto.loto(
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
