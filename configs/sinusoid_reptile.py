"""Reptile on sinusoid regression.

Source: Nichol et al. 2018 sinusoid demo (inner SGD 0.02, 30k outer steps,
outer step size annealed linearly to 0), adapted to the MAML protocol: K = 10
support points, 5 full-batch inner steps per task. We use batched Reptile
(10 tasks per outer step, outer step 1.0 as in the paper's few-shot runs):
serial Reptile (data.meta_batch_size=1, outer.lr=0.1, the demo's setting)
reached 1.15 / 0.48 MSE after 1 / 10 steps here against 0.59 / 0.19 for this
config; outer.lr=1.0 with 10 inner steps diverged.

Run:      metajax train --config sinusoid_reptile
Expected: fits improve steadily with more steps; 1-step MSE above MAML's
          (Reptile does not optimise for one-step performance).
Runtime:  under a minute on 2 CPU cores.
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
