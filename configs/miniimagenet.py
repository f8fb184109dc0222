"""Shared Mini-ImageNet settings (Finn et al. 2017, appendix A.1; Ravi & Larochelle 2017 split).

Data: user-supplied files (see ``metajax.data.load_miniimagenet`` for the
layouts) under data.data_dir or $METAJAX_MINIIMAGENET_DIR; 84x84x3. Model:
Conv4 with 32 filters. MAML: 5 inner steps of SGD with alpha = 0.01 in
training, 10 at test; meta-batch 4 (1-shot) or 2 (5-shot); 15 query examples
per class; 60k iterations.
"""

from ml_collections import ConfigDict

from .omniglot import omniglot_config


def miniimagenet_config(algorithm: str, ways: int, shots: int, smoke: bool = False) -> ConfigDict:
    c = omniglot_config(algorithm, ways, shots, smoke)
    c.task = "miniimagenet"
    del c.data.split, c.data.split_seed, c.data.rotations
    c.data.allow_pickle = False
    c.data.queries = 15
    c.data.meta_batch_size = 4 if shots == 1 else 2
    c.model.filters = 32 if not smoke else 8
    c.inner.lr = 0.01
    c.inner.steps = 5
    c.eval.steps = 10
    if smoke:
        c.data.meta_batch_size = 2
        c.data.queries = 2
        c.eval.queries = 2
    return ConfigDict(c)


def miniimagenet_mamlpp(shots: int, smoke: bool = False) -> ConfigDict:
    """MAML++ on Mini-ImageNet with the reference code's settings: 48 filters, inner rate 0.01, meta-batch 2,
    multi-step loss over 15 epochs of 500 meta-steps, a cosine schedule whose minimum is its start (1e-3)."""
    from .omniglot import mamlpp_settings

    c = mamlpp_settings(miniimagenet_config("mamlpp", 5, shots, smoke), smoke, msl_epochs=15)
    c.inner.lr = 0.01
    c.outer.min_lr = 1e-3
    if not smoke:
        c.data.meta_batch_size = 2
        c.model.filters = 48
    return c
