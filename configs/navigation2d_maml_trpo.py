"""MAML-TRPO on 2D navigation with the MAML paper code's settings (normalised actions, inner step 0.5).

Source: Finn et al. 2017, section 5.3 and its code (rllab's ``normalize``: the policy acts in [-1, 1], scaled to
+-0.1); the rest follows pytorch-maml-rl's 2D-navigation config (configs/navigation2d_common.py), with the
references' surrogate (inner.estimator=dice for the exact meta-gradient).
Paper: Figure 5, about -40 before adaptation, -12 after one step, about -3 after two or three; a random
initialisation about -83 before and -47 after three steps.

Run:      metajax train --config navigation2d_maml_trpo   (--smoke: two tiny meta-steps, seconds)
Runtime:  on 2 CPU cores about 7-10 s per meta-iteration (500 by default: about an hour and a half;
          --set train.num_steps=N for fewer); --smoke in under a minute, mostly compiling.
Measured: no result file yet.
"""

from .navigation2d_common import meta_rl_config


def get_config(smoke: bool = False):
    return meta_rl_config("navigation2d", "maml", "trpo", 0.5, smoke, actions="normalized")
