"""Times pytorch-maml-rl's own MAML-TRPO training loop on its 2D-navigation config (the reference side of
benchmarks/maml_rl_speed.py). Runs under a separate Python with PyTorch; it does not import metajax or jax.

    python benchmarks/pytorch_maml_rl_worker.py --repo /path/to/pytorch-maml-rl --meta-batch-size 20 \\
        --num-workers 2 --iterations 5 --warmup 1

Setup (tested with Python 3.11.7, torch 2.13.0+cpu, gym 0.17.3, numpy 1.26.4, pytorch-maml-rl at commit
21d4ba1ccd300a403928e6db553c9529bcc3fbdf, its master of 2020-08-31), outside this repository:

    mkdir -p /work/pmrl && cd /work/pmrl
    git clone https://github.com/tristandeleu/pytorch-maml-rl    # only the code is needed, not _assets/
    python3 -m venv venv
    venv/bin/pip install --upgrade pip
    venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu   # or: venv/bin/pip install torch
    venv/bin/pip install "numpy==1.26.*" gym==0.17.3 pyyaml tqdm

Its requirements.txt asks for torch>=1.3, gym[mujoco]>=0.15, tqdm, pyyaml; the mujoco extra is only for the
MuJoCo configs and is not installed. gym 0.17.3 is the gym these sources were written for (its
``gym.vector.SyncVectorEnv`` internals, the 4-tuple ``step``); numpy must stay below 2 (``np.float_``).

The one patch (nothing else is changed): ``torch.lstsq`` was removed from PyTorch, so in
``maml_rl/baseline.py``, ``LinearFeatureBaseline.fit``,

    -                coeffs, _ = torch.lstsq(XT_y, XT_X + reg_coeff * self._eye)
    +                coeffs = torch.linalg.lstsq(XT_X + reg_coeff * self._eye, XT_y,
    +                                            driver='gels').solution

(``torch.lstsq(B, A)`` took the right-hand side first; ``torch.linalg.lstsq(A, B)`` takes the matrix first and
returns the (n x 1) solution in ``.solution``, which ``fit`` flattens as before; ``gels`` is the QR solver
``torch.lstsq`` used on CPU, so a rank-deficient system still gives inf/nan and the reference's retry with 10x
more regularisation still applies.) This script stops with a message if the patch is missing.

What is timed: each iteration of the loop of pytorch-maml-rl's ``train.py`` (``sampler.sample_tasks``,
``sampler.sample_async``, ``metalearner.step``, ``sampler.sample_wait``, the returns it logs), with the config's
values (64x64 tanh Gaussian policy, fast-lr 0.1, 20 trajectories per task, one inner step, gamma 0.99,
GAE lambda 1.0, horizon 100, TRPO max-kl 1e-2, cg-iters 10, cg-damping 1e-5, ls-max-steps 15,
ls-backtrack-ratio 0.8) except ``--meta-batch-size``. Sampling runs in ``--num-workers`` forked processes
overlapped with the meta-update, as in the reference. Not timed: building the policy and starting the sampler
processes, the ``--warmup`` iterations, and ``train.py``'s progress bar and policy saving. The policy is trained
as in ``train.py`` (each iteration starts from the previous update). ``torch.set_num_threads(--torch-threads)``
(default 1) is called before the sampler processes fork, so they inherit it; ``train.py`` itself leaves
PyTorch's default (one thread per core). ``ls_points`` counts the line-search points ``metalearner.step``
evaluated (the accepted one included; 15 when every one was rejected), by wrapping ``surrogate_loss`` with a
counter that does not change what it computes.

Prints ONE JSON line (times in seconds; ``s_per_iteration`` is the median of ``times_s``).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def check_patched(repo: str, torch) -> None:
    with open(os.path.join(repo, "maml_rl", "baseline.py")) as f:
        source = f.read()
    if "torch.lstsq(" in source and not hasattr(torch, "lstsq"):
        sys.exit(
            f"{repo}/maml_rl/baseline.py still calls torch.lstsq, which torch {torch.__version__} no longer has: "
            "apply the torch.linalg.lstsq patch described in this script's docstring"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True, help="the pytorch-maml-rl checkout (patched as described above)")
    ap.add_argument("--config", default="configs/maml/2d-navigation.yaml", help="relative to --repo, or absolute")
    ap.add_argument("--meta-batch-size", type=int, default=None, help="tasks per iteration (default: the config's)")
    ap.add_argument("--num-workers", type=int, default=2, help="sampler processes")
    ap.add_argument("--iterations", type=int, default=5, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads, inherited by the workers")
    args = ap.parse_args()

    repo = os.path.abspath(args.repo)
    sys.path.insert(0, repo)
    import gym
    import numpy as np
    import torch
    import yaml

    torch.set_num_threads(args.torch_threads)
    check_patched(repo, torch)

    import maml_rl.envs  # noqa: F401  (registers 2DNavigation-v0)
    from maml_rl.baseline import LinearFeatureBaseline
    from maml_rl.metalearners import MAMLTRPO
    from maml_rl.samplers import MultiTaskSampler
    from maml_rl.utils.helpers import get_input_size, get_policy_for_env
    from maml_rl.utils.reinforcement_learning import get_returns

    config_path = args.config if os.path.isabs(args.config) else os.path.join(repo, args.config)
    with open(config_path) as f:
        config = yaml.load(f, Loader=yaml.FullLoader)
    if args.meta_batch_size is not None:
        config["meta-batch-size"] = args.meta_batch_size
    device = "cpu"

    # As train.py.
    torch.manual_seed(args.seed)
    env = gym.make(config["env-name"], **config.get("env-kwargs", {}))
    env.close()
    policy = get_policy_for_env(env, hidden_sizes=config["hidden-sizes"], nonlinearity=config["nonlinearity"])
    policy.share_memory()
    baseline = LinearFeatureBaseline(get_input_size(env))
    sampler = MultiTaskSampler(
        config["env-name"],
        env_kwargs=config.get("env-kwargs", {}),
        batch_size=config["fast-batch-size"],
        policy=policy,
        baseline=baseline,
        env=env,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    metalearner = MAMLTRPO(policy, fast_lr=config["fast-lr"], first_order=config["first-order"], device=device)

    ls_calls = [0]
    surrogate_loss = metalearner.surrogate_loss

    async def counted_surrogate_loss(train_futures, valid_futures, old_pi=None):
        if old_pi is not None:
            ls_calls[0] += 1
        return await surrogate_loss(train_futures, valid_futures, old_pi=old_pi)

    metalearner.surrogate_loss = counted_surrogate_loss

    load_before = os.getloadavg()
    times, ls_points, accepted, train_returns, valid_returns = [], [], [], [], []
    num_iterations = 0
    for it in range(args.warmup + args.iterations):
        ls_calls[0] = 0
        t0 = time.perf_counter()
        # The body of train.py's loop, without the policy saving.
        tasks = sampler.sample_tasks(num_tasks=config["meta-batch-size"])
        futures = sampler.sample_async(
            tasks,
            num_steps=config["num-steps"],
            fast_lr=config["fast-lr"],
            gamma=config["gamma"],
            gae_lambda=config["gae-lambda"],
            device=device,
        )
        logs = metalearner.step(
            *futures,
            max_kl=config["max-kl"],
            cg_iters=config["cg-iters"],
            cg_damping=config["cg-damping"],
            ls_max_steps=config["ls-max-steps"],
            ls_backtrack_ratio=config["ls-backtrack-ratio"],
        )
        train_episodes, valid_episodes = sampler.sample_wait(futures)
        num_iterations += sum(sum(episode.lengths) for episode in train_episodes[0])
        num_iterations += sum(sum(episode.lengths) for episode in valid_episodes)
        logs.update(
            tasks=tasks,
            num_iterations=num_iterations,
            train_returns=get_returns(train_episodes[0]),
            valid_returns=get_returns(valid_episodes),
        )
        dt = time.perf_counter() - t0
        if it >= args.warmup:
            times.append(dt)
            ls_points.append(ls_calls[0] // len(tasks))
            accepted.append("loss_after" in logs)
            train_returns.append(float(np.mean(logs["train_returns"])))
            valid_returns.append(float(np.mean(logs["valid_returns"])))
        print(f"iteration {it}{' (warm-up)' if it < args.warmup else ''}: {dt:.3f} s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    sampler.close()

    settings = {
        k: config[k]
        for k in (
            "env-name",
            "env-kwargs",
            "hidden-sizes",
            "nonlinearity",
            "fast-batch-size",
            "num-steps",
            "fast-lr",
            "first-order",
            "meta-batch-size",
            "gamma",
            "gae-lambda",
            "max-kl",
            "cg-iters",
            "cg-damping",
            "ls-max-steps",
            "ls-backtrack-ratio",
        )
    }
    settings["horizon"] = env.spec.max_episode_steps
    result = {
        "implementation": "pytorch-maml-rl",
        "times_s": times,
        "s_per_iteration": statistics.median(times) if times else None,
        "ls_points": ls_points,
        "accepted": accepted,
        "train_return_mean": train_returns,
        "valid_return_mean": valid_returns,
        "meta_batch_size": config["meta-batch-size"],
        "num_workers": args.num_workers,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "config": settings,
        "repo": repo,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gym": gym.__version__,
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "loadavg_1min_before_after": [load_before[0], load_after[0]],
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
