"""Reptile, Omniglot 20-way 5-shot, with the superseded early-2018 command.

Source: Nichol et al. 2018, the command for this setting in the first version of the openai/supervised-reptile
README (run_omniglot.py flags), replaced since by the one in ``omniglot_20w5s_reptile``:
--classes 20 --shots 5 --train-shots 12 --inner-batch 20 --inner-iters 12
--learning-rate 0.00046 --meta-step 1 --meta-step-final 0 --meta-batch 3
--meta-iters 200000 --eval-batch 10 --eval-iters 97
Kept because a row of our reproduction table was trained with it.
Paper: 96.65 +- 0.33 % (97.12 +- 0.32 % transductive) (with the current command).

Run:      metajax train --config omniglot_20w5s_reptile_2018
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import reptile_settings


def get_config(smoke: bool = False):
    return reptile_settings(20, 5, smoke, flags="2018")
