"""First-order MAML on 2D navigation (normalised actions, inner step 0.5), Adam outer optimiser.

Source: Finn et al. 2017 (first-order approximation, section 5.2) with the MAML-TRPO config's other settings;
the outer update is Adam 1e-3 on the first-order meta-gradient (no TRPO).
Paper: no published figure for first-order MAML on 2D navigation that we checked.

Run:      metajax train --config navigation2d_fomaml   (--smoke: seconds)
Runtime:  on 2 CPU cores about a second per meta-iteration.
Measured: no result file yet.
"""

from .navigation2d_common import meta_rl_config


def get_config(smoke: bool = False):
    return meta_rl_config("navigation2d", "fomaml", "adam", 0.5, smoke, actions="normalized")
