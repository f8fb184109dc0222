"""Reptile, Omniglot 5-way 5-shot, with the superseded early-2018 command.

Source: Nichol et al. 2018, the command for this setting in the first version of the openai/supervised-reptile
README (run_omniglot.py flags), replaced since by the one in ``omniglot_5w5s_reptile``:
--classes 5 --shots 5 --train-shots 10 --inner-batch 10 --inner-iters 5
--learning-rate 0.0015 --meta-step 0.7 --meta-step-final 0 --meta-batch 5
--meta-iters 100000 --eval-batch 6 --eval-iters 100
Kept because a row of our reproduction table was trained with it.
Paper: 98.90 +- 0.10 % (99.48 +- 0.06 % transductive) (with the current command).

Run:      metajax train --config omniglot_5w5s_reptile_2018
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(5, 5, smoke, flags="2018")
