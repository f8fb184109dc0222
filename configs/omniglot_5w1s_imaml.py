"""Implicit MAML (iMAML), Omniglot 5-way 1-shot.

Source: Rajeswaran et al. 2019 (NeurIPS) and the defaults of their reference
code (examples/omniglot_implicit_maml.py in aravindr93/imaml_dev): 16 inner
gradient steps on the proximal objective with lambda = 1, 5 conjugate-gradient
steps, meta-batch 16. The inner rate here is MAML's 0.4 scaled down to 0.1 for
16 steps (the reference code's network and loss scaling differ from ours).
Paper: 99.16 +- 0.35 % (iMAML-GD, 5-way 1-shot).

Run:      metajax train --config omniglot_5w1s_imaml
Measured (shortened): 300 meta-steps (~17 min on one CPU core) -> 85.44 +- 0.72 %
(transductive BN) / 83.52 +- 0.76 % (support BN) on 600 test tasks (benchmarks/README.md).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("imaml", 5, 1, smoke)
    c.data.meta_batch_size = 16 if not smoke else c.data.meta_batch_size
    c.inner.steps = 16 if not smoke else 2
    c.eval.steps = c.inner.steps  # test-time adaptation solves the same proximal problem
    c.inner.lr = 0.1
    c.inner.lam = 1.0
    c.inner.cg_steps = 5
    return c
