"""Shared sinusoid-regression settings (MAML paper, section 5.1).

Task distribution: amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]; K = 10
support and 10 query points; MLP 1-40-40-1 (ReLU); meta-batch 25 tasks;
inner SGD alpha = 0.01; outer Adam 1e-3; 70,000 meta-iterations. Evaluation:
600 held-out tasks, K = 10 support points, 100 query points, MSE after 0..10
and 32 inner steps with the training inner optimiser and rate, against a random
init and a jointly trained ("pretrained") init.
"""

from ml_collections import ConfigDict


def sinusoid_config(algorithm: str, smoke: bool = False) -> ConfigDict:
    c = ConfigDict()
    c.task = "sinusoid"
    c.algorithm = algorithm
    c.seed = 0
    c.model = ConfigDict({"hidden": (40, 40), "compute_dtype": "float32"})
    c.data = ConfigDict({"shots": 10, "query_shots": 10, "meta_batch_size": 25})
    c.inner = ConfigDict(
        {"opt": "sgd", "lr": 0.01, "steps": 1, "gradient": "exact", "granularity": "parameter", "head": "Dense_2"}
    )
    c.outer = ConfigDict({"opt": "adam", "lr": 1e-3, "anneal": False})
    c.train = ConfigDict(
        {"num_steps": 70_000, "steps_per_call": 1_000, "checkpoint_every": 10_000, "nan_policy": "stop"}
    )
    c.eval = ConfigDict(
        {
            "num_tasks": 600,
            "query_shots": 100,
            "max_steps": 32,
            "report_steps": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 32),
            "pretrain_steps": 10_000,
            "diverged_above": 100.0,
            "seed": 12345,
            "num_examples": 3,
        }
    )
    # Pin to one core on CPU: this workload is too small for XLA's intra-op
    # threads, which cost a third of the speed on 2 cores (benchmarks/README.md).
    c.runtime = ConfigDict(
        {
            "cpu_threads": 1,
            "cpu_streams": 1,
            "devices": 1,
            "distributed": False,
            "memory_plan": "off",  # "auto" / "chunk": fit memory_budget_gb (see configs/omniglot.py)
            "memory_budget_gb": None,
        }
    )
    if smoke:
        c.train.num_steps = 300
        c.train.steps_per_call = 100
        c.eval.num_tasks = 50
        c.eval.pretrain_steps = 200
    return c
