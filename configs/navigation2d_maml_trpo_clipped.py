"""MAML-TRPO on 2D navigation with pytorch-maml-rl's own config (raw actions clipped to +-0.1, inner step 0.1).

Source: tristandeleu/pytorch-maml-rl, configs/maml/2d-navigation.yaml (64x64 tanh, 20 tasks x 20 trajectories,
fast-lr 0.1, TRPO max KL 0.01, 500 batches). Its returns are not comparable with the normalised-action
configuration's: eval.md says which convention a result used.

Run:      metajax train --config navigation2d_maml_trpo_clipped   (--smoke: seconds)
Runtime:  on 2 CPU cores about 7-10 s per meta-iteration (500 by default); --smoke in under a minute.
Measured: after 100 meta-iterations (one seed), test return -39.2 +- 5.1 / -15.4 +- 2.6 / -10.5 +- 1.2 /
-10.8 +- 1.3 after 0 / 1 / 2 / 3 inner steps (0.1, then 0.05); random init -97.0 / -87.0 / -79.7 / -75.3
(2026-12-07; benchmarks/results/20261207-220805-maml-rl-navigation.md).
"""

from .navigation2d_common import meta_rl_config


def get_config(smoke: bool = False):
    return meta_rl_config("navigation2d", "maml", "trpo", 0.1, smoke, actions="clipped")
