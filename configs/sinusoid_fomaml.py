"""First-order MAML on sinusoid regression, MAML's settings otherwise.

Source: Finn et al. 2017 (first-order approximation); Nichol et al. 2018.

Run:      metajax train --config sinusoid_fomaml
Expected: 1-step MSE a little above MAML's (the prototype measured 0.35).
Runtime:  about a minute on 2 CPU cores.
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("fomaml", smoke)
