"""MAML on sinusoid regression: the default job (`metajax train`).

Source: Finn et al. 2017, section 5.1 (K = 10, alpha = 0.01, meta-batch 25,
Adam 1e-3, 70k iterations).
Paper: no number in Finn et al. 2017 (its Figure 2 plots the curves); Li et al. 2017 (Table 1)
report a 10-shot MSE after one step of 0.85 +- 0.14 for MAML on this task family.

Run:      metajax train --config sinusoid_maml
Runtime:  under a minute of training and a minute of evaluation on 2 CPU cores.
Measured: query MSE 0.300 +- 0.031 / 0.084 +- 0.012 after 1 / 10 inner steps on 600 held-out tasks
(2026-12-04; benchmarks/results/reproduction/sinusoid_maml.json).
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("maml", smoke)
