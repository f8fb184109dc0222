"""Reptile, Omniglot 20-way 5-shot.

Source: Nichol et al. 2018, the command for this setting in the openai/supervised-reptile README
(run_omniglot.py flags; the README's current commands, which match the final paper):
--classes 20 --shots 5 --train-shots 10 --inner-batch 20 --inner-iters 10
--learning-rate 0.0005 --meta-step 1 --meta-step-final 0 --meta-batch 5
--meta-iters 200000 --eval-batch 10 --eval-iters 50
Inner Adam with beta1 = 0, the outer step annealed linearly to 0.
Paper: 96.65 +- 0.33 % (97.12 +- 0.32 % transductive).

Run:      metajax train --config omniglot_20w5s_reptile
Measured: no result file yet.
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(20, 5, smoke)
