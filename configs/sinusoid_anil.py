"""ANIL on sinusoid regression: only the last layer (Dense_2) is adapted.

Source: Raghu et al. 2020 (ANIL), with MAML's sinusoid settings.
Paper: no number (Raghu et al. 2020 report classification only).

Run:      metajax train --config sinusoid_anil
Runtime:  about a minute on 2 CPU cores.
Measured: query MSE 0.923 +- 0.083 / 0.782 +- 0.432, 2 diverged after 1 / 10 inner steps on 600 held-out tasks
(2026-12-04; benchmarks/results/reproduction/sinusoid_anil.json).
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("anil", smoke)
