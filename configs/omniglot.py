"""Shared Omniglot few-shot settings (Finn et al. 2017, section 5.2 and appendix A.1).

Data: TFDS omniglot from data.data_dir (default $METAJAX_DATA_DIR, then
~/tensorflow_datasets); MAML split (1,100 train / 100 val / 423 test
characters, rotations as classes), 28x28. Model: Conv4 with 64 filters, batch
norm (transductive in training, as in the paper), 2x2 max-pool as in the
paper's text; the MAML authors' code trains Omniglot with stride-2
convolutions instead (``--set model.downsample=stride``). Training
episodes use `queries` query examples per class (MAML's code: as many as
shots); evaluation uses 15 per class on 600 test tasks and reports
transductive and non-transductive (support-statistics) batch norm.
"""

from ml_collections import ConfigDict, config_dict


def omniglot_config(algorithm: str, ways: int, shots: int, smoke: bool = False) -> ConfigDict:
    c = ConfigDict()
    c.task = "omniglot"
    c.algorithm = algorithm
    c.seed = 0
    c.data = ConfigDict(
        {
            "data_dir": config_dict.placeholder(str),
            "split": "maml",
            "split_seed": 0,
            "rotations": True,
            "ways": ways,
            "shots": shots,
            "queries": shots,
            "meta_batch_size": 32,
            # "auto": lax.map over tasks on CPU (faster than vmap for per-task
            # conv weights, ~5x less memory: benchmarks/README.md), vmap on
            # GPU/TPU. Or "vmap", or an int (chunks of that many tasks).
            "task_chunk": "auto",
            "order": "class",
        }
    )
    # downsample: "pool" (2x2 max-pool, the paper's text) or "stride" (stride-2 convolutions, no pooling, features
    # averaged before the head: the MAML authors' code for Omniglot, its max_pool flag off)
    # compute_dtype: "float32", or "bfloat16"/"float16" for mixed precision (forward pass and inner-loop gradients
    # in that dtype; parameters, optimiser states, updates, losses and batch-norm statistics in float32)
    c.model = ConfigDict({"filters": 64, "conv": "auto", "downsample": "pool", "compute_dtype": "float32"})
    c.inner = ConfigDict(
        {
            "opt": "sgd",
            "lr": 0.4,
            "steps": 1,
            "gradient": "exact",
            "granularity": "parameter",
            "head": "head",
            "batch_size": config_dict.placeholder(int),
            "b1": 0.9,
        }
    )
    c.outer = ConfigDict({"opt": "adam", "lr": 1e-3, "anneal": False})
    c.train = ConfigDict(
        {
            "num_steps": 60_000,
            "steps_per_call": 10,
            "eval_every": 500,
            "val_tasks": 200,
            "checkpoint_every": 100,
            "nan_policy": "stop",
        }
    )
    c.eval = ConfigDict(
        {
            "ways": ways,
            "shots": shots,
            "queries": 15,
            "num_tasks": 600,
            "steps": 3,
            "inner_batch_size": config_dict.placeholder(int),
            "bn": ("transductive", "support"),
            "seed": 2024,
        }
    )
    # cpu_streams: on the CPU backend, split the host into this many XLA devices and shard the tasks over them
    # (0: one per core, reduced to a divisor of the meta-batch; 1: off); see metajax.use_cpu_streams.
    # eval_tasks_per_call: evaluation scores its tasks in calls of this many (one compiled program for the 200
    # validation and 600 test tasks, a progress line per call); None: all in one call.
    # memory_plan: "auto" picks data.task_chunk and the exact gradient's rematerialisation (inner.gradient) to fit
    # memory_budget_gb (GB = 1e9 bytes; None: 90 % of the free memory), "chunk" the task chunk only, "off" neither.
    c.runtime = ConfigDict(
        {
            "cpu_threads": 0,
            "cpu_streams": 0,
            "devices": 1,
            "distributed": False,
            "eval_tasks_per_call": 100,
            "memory_plan": "off",
            "memory_budget_gb": None,
        }
    )
    if smoke:
        c.train.num_steps = 20
        c.train.eval_every = 10
        c.train.val_tasks = 10
        c.train.steps_per_call = 5
        c.data.meta_batch_size = 2
        c.model.filters = 8
        c.eval.num_tasks = 10
    return c


def maml_20_way(shots: int, smoke: bool = False, algorithm: str = "maml") -> ConfigDict:
    """MAML 20-way settings (Finn et al. 2017, A.1): alpha 0.1, 5 inner steps (train and test), meta-batch 16."""
    c = omniglot_config(algorithm, 20, shots, smoke)
    c.inner.lr = 0.1
    c.inner.steps = 5
    c.eval.steps = 5
    if not smoke:
        c.data.meta_batch_size = 16
    return c


def maml_settings(algorithm: str, ways: int, shots: int, smoke: bool = False) -> ConfigDict:
    """MAML's published settings for ``ways`` (5: alpha 0.4, 1 step, meta-batch 32; 20: :func:`maml_20_way`)."""
    if ways == 20:
        return maml_20_way(shots, smoke, algorithm)
    return omniglot_config(algorithm, ways, shots, smoke)


def meta_sgd_settings(ways: int, shots: int, smoke: bool = False) -> ConfigDict:
    """Meta-SGD (Li et al. 2017): one inner step with learned per-parameter rates, MAML's meta-batch.

    The learned rates start at MAML's alpha for the way count (0.4 for 5-way,
    0.1 for 20-way); evaluation takes the same single step.
    """
    c = omniglot_config("meta_sgd", ways, shots, smoke)
    c.eval.steps = 1
    if ways == 20:
        c.inner.lr = 0.1
        if not smoke:
            c.data.meta_batch_size = 16
    return c


# Nichol et al. 2018: the run_omniglot.py flags of the commands for the paper in the openai/supervised-reptile
# README (its current version, which matches the final paper).
REPTILE_FLAGS = {
    (5, 1): dict(train_shots=10, inner_batch=10, inner_iters=5, lr=0.001, meta_step=1.0, meta_batch=5,
                 meta_iters=100_000, eval_batch=5, eval_iters=50),
    (5, 5): dict(train_shots=10, inner_batch=10, inner_iters=5, lr=0.001, meta_step=1.0, meta_batch=5,
                 meta_iters=100_000, eval_batch=5, eval_iters=50),
    (20, 1): dict(train_shots=10, inner_batch=20, inner_iters=10, lr=0.0005, meta_step=1.0, meta_batch=5,
                  meta_iters=200_000, eval_batch=10, eval_iters=50),
    (20, 5): dict(train_shots=10, inner_batch=20, inner_iters=10, lr=0.0005, meta_step=1.0, meta_batch=5,
                  meta_iters=200_000, eval_batch=10, eval_iters=50),
}  # fmt: skip

# The same README's earlier (early-2018, superseded) commands, kept for the configs named *_reptile_2018: rows of
# our reproduction table were trained with them.
REPTILE_FLAGS_2018 = {
    (5, 5): dict(train_shots=10, inner_batch=10, inner_iters=5, lr=0.0015, meta_step=0.7, meta_batch=5,
                 meta_iters=100_000, eval_batch=6, eval_iters=100),
    (20, 1): dict(train_shots=9, inner_batch=15, inner_iters=12, lr=0.00046, meta_step=1.0, meta_batch=3,
                  meta_iters=200_000, eval_batch=10, eval_iters=97),
    (20, 5): dict(train_shots=12, inner_batch=20, inner_iters=12, lr=0.00046, meta_step=1.0, meta_batch=3,
                  meta_iters=200_000, eval_batch=10, eval_iters=97),
}  # fmt: skip


def reptile_settings(ways: int, shots: int, smoke: bool = False, flags: str = "current") -> ConfigDict:
    """Reptile with :data:`REPTILE_FLAGS` for this setting (Nichol et al.'s run_omniglot.py commands).

    ``flags="2018"``: the superseded early-2018 commands (:data:`REPTILE_FLAGS_2018`).

    Inner Adam with beta1 = 0 on minibatches of ``inner_batch`` drawn in order
    from ``train_shots`` examples per class; outer SGD with ``meta_step``
    annealed linearly to 0 over ``meta_iters``; evaluation with
    ``eval_iters`` Adam steps on minibatches of ``eval_batch``.
    """
    f = (REPTILE_FLAGS if flags == "current" else REPTILE_FLAGS_2018)[(ways, shots)]
    c = omniglot_config("reptile", ways, shots, smoke)
    c.data.shots = f["train_shots"]  # Reptile trains on train_shots examples per class
    c.data.queries = 1
    c.data.order = "shot"  # consecutive inner minibatches mix the classes
    c.data.meta_batch_size = f["meta_batch"]
    c.inner.opt = "adam"
    c.inner.b1 = 0.0
    c.inner.lr = f["lr"]
    c.inner.steps = f["inner_iters"]
    c.inner.batch_size = f["inner_batch"]
    c.outer.opt = "sgd"
    c.outer.lr = f["meta_step"]
    c.outer.anneal = True
    c.eval.steps = f["eval_iters"]
    c.eval.inner_batch_size = f["eval_batch"]
    if not smoke:
        c.train.num_steps = f["meta_iters"]
        c.train.steps_per_call = 50
    return c


def mamlpp_settings(config: ConfigDict, smoke: bool = False, epochs: int = 100, msl_epochs: int = 10) -> ConfigDict:
    """Turn ``config`` into MAML++ (Antoniou, Edwards & Storkey 2019) with the reference code's settings.

    An epoch is 500 meta-steps there. Inner loop: 5 steps, learned per-layer per-step rates (LSLR) starting at
    ``inner.lr``, only the convolutions and the head adapted; per-step batch-norm weights and running statistics
    (momentum 0.1); multi-step loss annealed over ``msl_epochs`` epochs; derivative-order annealing off (the
    reference configs set it to -1, so second order from the start; ``inner.first_order_steps`` turns it on);
    Adam with the rate cosine-annealed from ``outer.lr`` to ``outer.min_lr`` over the run; evaluation after the
    same 5 steps, scored with the three batch-norm policies.
    """
    c = config
    c.algorithm = "mamlpp"
    c.inner.steps = 5
    c.inner.lslr = True
    c.inner.msl_anneal_steps = msl_epochs * 500
    c.inner.first_order_steps = 0
    c.inner.adapt = "Conv|head"
    c.model.per_step_bn = True
    c.model.per_step_stats = True
    c.model.bn_momentum = 0.1
    c.outer.schedule = "cosine"
    c.outer.min_lr = 1e-5
    c.train.num_steps = epochs * 500
    c.eval.steps = 5
    c.eval.bn = ("transductive", "support", "running")
    if smoke:
        c.inner.steps = c.eval.steps = 2
        c.inner.msl_anneal_steps = 10
        c.train.num_steps = 20
    return c


def omniglot_mamlpp(ways: int, shots: int, smoke: bool = False) -> ConfigDict:
    """MAML++ on Omniglot: meta-batch 8, inner rate 0.1, 1 query example per class in training (the reference
    code's ``num_target_samples``), 100 epochs of 500 meta-steps, multi-step loss over 10 epochs."""
    c = mamlpp_settings(omniglot_config("mamlpp", ways, shots, smoke), smoke)
    c.inner.lr = 0.1
    c.data.queries = 1
    if not smoke:
        c.data.meta_batch_size = 8
    return c
