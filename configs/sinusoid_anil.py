"""ANIL on sinusoid regression: only the last layer (Dense_2) is adapted.

Source: Raghu et al. 2020 (ANIL), with MAML's sinusoid settings.

Run:      metajax train --config sinusoid_anil
Expected: learns to adapt, with fewer adaptable parameters than MAML.
Runtime:  about a minute on 2 CPU cores.
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("anil", smoke)
