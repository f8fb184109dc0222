"""Experiment configs: each module's ``get_config(smoke=False)`` returns a ConfigDict.

Installed as ``metajax.configs`` so ``metajax train --config NAME`` finds them
without a checkout; a path to any ``.py`` file with ``get_config`` works too.
"""
