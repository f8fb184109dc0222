"""Reptile, Omniglot 5-way 5-shot.

Source: Nichol et al. 2018, the paper's command for this setting in the
openai/supervised-reptile README (run_omniglot.py flags):
--classes 5 --shots 5 --train-shots 10 --inner-batch 10 --inner-iters 5
--learning-rate 0.0015 --meta-step 0.7 --meta-step-final 0 --meta-batch 5
--meta-iters 100000 --eval-batch 6 --eval-iters 100
Paper: 98.90 +- 0.10 % (99.48 +- 0.06 % transductive).

Run:      metajax train --config omniglot_5w5s_reptile
Measured here (shortened, 2,000 outer steps): 96.81 +- 0.24 % (transductive) (benchmarks/README.md).
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(5, 5, smoke)
