"""Reptile, Omniglot 5-way 1-shot.

Source: Nichol et al. 2018, the command for this setting in the openai/supervised-reptile README
(run_omniglot.py flags; the README's current commands, which match the final paper):
--classes 5 --shots 1 --train-shots 10 --inner-batch 10 --inner-iters 5
--learning-rate 0.001 --meta-step 1 --meta-step-final 0 --meta-batch 5
--meta-iters 100000 --eval-batch 5 --eval-iters 50
Inner Adam with beta1 = 0, the outer step annealed linearly to 0.
Paper: 95.39 +- 0.09 % (97.68 +- 0.04 % transductive).

Run:      metajax train --config omniglot_5w1s_reptile
Measured: 86.53 +- 0.62 % (transductive BN) / 84.20 +- 0.68 % (non-transductive) on 600 test tasks after 2,000
meta-steps, a shortened budget (2026-12-04; benchmarks/results/reproduction/omniglot_5w1s_reptile.json).
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(5, 1, smoke)
