"""Reptile, Omniglot 20-way 5-shot.

Source: Nichol et al. 2018, the paper's command for this setting in the
openai/supervised-reptile README (run_omniglot.py flags):
--classes 20 --shots 5 --train-shots 12 --inner-batch 20 --inner-iters 12
--learning-rate 0.00046 --meta-step 1.0 --meta-step-final 0 --meta-batch 3
--meta-iters 200000 --eval-batch 10 --eval-iters 97
Paper: 96.65 +- 0.33 % (97.12 +- 0.32 % transductive).

Run:      metajax train --config omniglot_20w5s_reptile
Measured (shortened): 2,000 outer steps (~37 min of CPU training) -> 69.89 +- 0.45 %
(transductive BN) / 69.74 +- 0.45 % (support BN) on 600 test tasks (benchmarks/README.md).
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(20, 5, smoke)
