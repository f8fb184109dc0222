"""Reptile, Omniglot 20-way 1-shot.

Source: Nichol et al. 2018, the paper's command for this setting in the
openai/supervised-reptile README (run_omniglot.py flags):
--classes 20 --shots 1 --train-shots 9 --inner-batch 15 --inner-iters 12
--learning-rate 0.00046 --meta-step 1.0 --meta-step-final 0 --meta-batch 3
--meta-iters 200000 --eval-batch 10 --eval-iters 97
Paper: 88.14 +- 0.15 % (89.43 +- 0.14 % transductive).

Run:      metajax train --config omniglot_20w1s_reptile
Measured (shortened): 2,000 outer steps (~37 min on one CPU core) -> 62.18 +- 0.46 %
(transductive BN) / 61.39 +- 0.47 % (support BN) on 600 test tasks (benchmarks/README.md).
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(20, 1, smoke)
