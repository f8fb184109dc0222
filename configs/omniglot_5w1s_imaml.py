"""Implicit MAML (iMAML), Omniglot 5-way 1-shot.

Source: Rajeswaran et al. 2019 (NeurIPS), the replication commands of their reference code
(aravindr93/imaml_dev, examples/README.md): training with 16 inner gradient steps of rate 0.1 on the
proximal objective with lambda = 2, 5 conjugate-gradient steps, meta-batch 32, outer Adam 1e-3, at least
20,000 meta-steps; evaluation on 600 test tasks with 16 steps of rate 0.1 and lambda = 0 (plain gradient
descent from the meta-parameters). Not followed: the reference code's CG damping of 1.0 (our solver has
none) and its fixed pool of pre-generated training tasks (we sample fresh episodes).
Paper: 99.16 +- 0.35 % (iMAML-GD, 5-way 1-shot).

Run:      metajax train --config omniglot_5w1s_imaml
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("imaml", 5, 1, smoke)
    c.data.meta_batch_size = 32 if not smoke else c.data.meta_batch_size
    c.inner.steps = 16 if not smoke else 2
    c.inner.lr = 0.1
    c.inner.lam = 2.0
    c.inner.cg_steps = 5
    c.eval.steps = c.inner.steps
    c.eval.lam = 0.0  # the authors' evaluation: plain gradient descent from the meta-parameters
    return c
