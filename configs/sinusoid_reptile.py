"""Reptile on sinusoid regression.

Source: Nichol et al. 2018 sinusoid demo (inner SGD 0.02, 30k outer steps,
outer step size annealed linearly to 0), adapted to the MAML protocol: K = 10
support points, 5 full-batch inner steps per task. We use batched Reptile
(10 tasks per outer step, outer step 1.0 as in the paper's few-shot runs);
serial Reptile, the demo's setting, is ``--set data.meta_batch_size=1 --set
outer.lr=0.1``.
Paper: no number (Nichol et al. 2018 show the sinusoid fits as a figure).

Run:      metajax train --config sinusoid_reptile
Runtime:  under a minute on 2 CPU cores.
Measured: query MSE 0.538 +- 0.052 / 0.166 +- 0.024 after 1 / 10 inner steps on 600 held-out tasks
(2026-12-04; benchmarks/results/reproduction/sinusoid_reptile.json).
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    c = sinusoid_config("reptile", smoke)
    c.inner.lr = 0.02
    c.inner.steps = 5
    c.outer.opt = "sgd"
    c.outer.lr = 1.0
    c.outer.anneal = True
    c.data.meta_batch_size = 10
    c.train.num_steps = 300 if smoke else 30_000
    return c
