"""Reptile, Omniglot 5-way 1-shot (transductive).

Source: Nichol et al. 2018 (run_omniglot.py settings): train shots 10, inner
Adam (beta1 = 0) lr 1e-3, 5 inner steps on minibatches of 10, meta-batch 5,
outer step 1.0 annealed to 0, 100k outer steps; evaluated with 50 inner
steps on minibatches of 5. Paper: 97.68 +- 0.04 % (transductive).

Run:      metajax train --config omniglot_5w1s_reptile
Shortened CPU budgets we ran: benchmarks/README.md (reproduction table).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("reptile", 5, 1, smoke)
    c.data.shots = 10  # Reptile trains on 10 examples per class ("train-shots")
    c.data.queries = 1
    c.data.order = "shot"  # consecutive inner minibatches mix the classes
    c.data.meta_batch_size = 5
    c.inner.opt = "adam"
    c.inner.b1 = 0.0
    c.inner.lr = 1e-3
    c.inner.steps = 5
    c.inner.batch_size = 10
    c.outer.opt = "sgd"
    c.outer.lr = 1.0
    c.outer.anneal = True
    c.eval.steps = 50
    c.eval.inner_batch_size = 5
    if not smoke:
        c.train.num_steps = 100_000
        c.train.steps_per_call = 50
    return c
