"""MAML-TRPO on 2D navigation with pytorch-maml-rl's own config (raw actions clipped to +-0.1, inner step 0.1).

Source: tristandeleu/pytorch-maml-rl, configs/maml/2d-navigation.yaml (64x64 tanh, 20 tasks x 20 trajectories,
fast-lr 0.1, TRPO max KL 0.01, 500 batches). Its returns are not comparable with the normalised-action
configuration's: eval.md says which convention a result used.
Paper: the MAML paper's Figure 5 (about -40 / -12 / -3) used normalised actions; pytorch-maml-rl publishes no table.

Run:      metajax train --config navigation2d_maml_trpo_clipped   (--smoke: seconds)
Runtime:  on 2 CPU cores about 7-10 s per meta-iteration (500 by default); --smoke in under a minute.
Measured: no result file yet.
"""

from .navigation2d_common import meta_rl_config


def get_config(smoke: bool = False):
    return meta_rl_config("navigation2d", "maml", "trpo", 0.1, smoke, actions="clipped")
