"""MAML, Omniglot 5-way 5-shot.

Source: Finn et al. 2017 (appendix A.1), settings of the 5-way 1-shot run.
Paper: 99.9 +- 0.1 %.

Run:      metajax train --config omniglot_5w5s_maml
Measured: no result file yet (an earlier run is in the reproduction table of benchmarks/README.md).
"""

from .omniglot import omniglot_config


def get_config(smoke: bool = False):
    c = omniglot_config("maml", 5, 5, smoke)
    return c
