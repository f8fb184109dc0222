"""First-order MAML on sinusoid regression, MAML's settings otherwise.

Source: Finn et al. 2017 (first-order approximation); Nichol et al. 2018.
Paper: no number (Finn et al. 2017 report first-order MAML on classification only).

Run:      metajax train --config sinusoid_fomaml
Runtime:  about a minute on 2 CPU cores.
Measured: query MSE 0.337 +- 0.038 / 0.093 +- 0.014 after 1 / 10 inner steps on 600 held-out tasks
(2026-12-04; benchmarks/results/reproduction/sinusoid_fomaml.json).
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("fomaml", smoke)
