"""MAML on sinusoid regression: the default job (`metajax train`).

Source: Finn et al. 2017, section 5.1 (K = 10, alpha = 0.01, meta-batch 25,
Adam 1e-3, 70k iterations).

Run:      metajax train --config sinusoid_maml
Expected: query MSE after 1 / 10 steps about 0.3 / 0.1 on 600 held-out tasks,
          pretrained baseline about 2.4 after 1 step (see README.md for our
          measured numbers).
Runtime:  under a minute of training and a minute of evaluation on 2 CPU cores.
"""

from .sinusoid import sinusoid_config


def get_config(smoke: bool = False):
    return sinusoid_config("maml", smoke)
