"""Reptile, Omniglot 5-way 5-shot.

Source: Nichol et al. 2018, the command for this setting in the openai/supervised-reptile README
(run_omniglot.py flags; the README's current commands, which match the final paper):
--classes 5 --shots 5 --train-shots 10 --inner-batch 10 --inner-iters 5
--learning-rate 0.001 --meta-step 1 --meta-step-final 0 --meta-batch 5
--meta-iters 100000 --eval-batch 5 --eval-iters 50
Inner Adam with beta1 = 0, the outer step annealed linearly to 0.
Paper: 98.90 +- 0.10 % (99.48 +- 0.06 % transductive).

Run:      metajax train --config omniglot_5w5s_reptile
Measured: no result file yet.
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(5, 5, smoke)
