"""Reptile on sinusoid regression.

Source: Nichol et al. 2018 sinusoid demo (inner SGD 0.02, outer step 0.1
annealed linearly to 0, 30k outer steps, serial: one task per step), adapted to
the MAML protocol: K = 10 support points and 5 inner steps per task.

Run:      metajax train --config sinusoid_reptile
Expected: fits improve steadily with more steps; 1-step MSE above MAML's
          (Reptile does not optimise for one-step performance).
Runtime:  about a minute on 2 CPU cores.
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    c = sinusoid_config("reptile", smoke)
    c.inner.lr = 0.02
    c.inner.steps = 5
    c.outer.opt = "sgd"
    c.outer.lr = 0.1
    c.outer.anneal = True
    c.data.meta_batch_size = 1
    c.train.num_steps = 300 if smoke else 30_000
    return c
