"""Meta-SGD on 2D navigation: per-parameter inner rates learned with the policy (normalised actions).

Source: Li et al. 2017 (section 4.3 adapts policies with learned rates); rates start at 0.5 (the MAML config's
step); the references' surrogate (inner.estimator=dice: the exact meta-gradient, through the learner's inner
loop); Adam 1e-3 outer. Evaluation applies the learned rates at the first step and half of them after.
Paper: Li et al. 2017 report no 2D-navigation figure that we checked.

Run:      metajax train --config navigation2d_meta_sgd   (--smoke: seconds)
Runtime:  on 2 CPU cores a few seconds per meta-iteration.
Measured: no result file yet.
"""

from .navigation2d_common import meta_rl_config


def get_config(smoke: bool = False):
    return meta_rl_config("navigation2d", "meta_sgd", "adam", 0.5, smoke, actions="normalized")
