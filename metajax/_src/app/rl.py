"""Meta-reinforcement learning from a config: environment, policy, learner, outer step and the test protocol.

:func:`build_rl` turns a config whose ``task`` is ``"navigation2d"``, ``"cartpole"`` or ``"bandit"`` into an
:class:`~metajax._src.app.experiment.Experiment` that :func:`~metajax._src.app.train.meta_train` runs like any
other: the learners come from the algorithm registry and drive :attr:`MetaRL.loss_fn` (stateful: the loss draws
rollouts with the per-task key, and the DiCE log-weight is the "model state" whose derivative crosses the inner
steps); ``outer.opt="trpo"`` replaces the Optax outer update by MAML-TRPO (:func:`trpo_meta_step`).

The evaluation is the MAML paper's test protocol (Finn et al. 2017, section 5.3): ``eval.num_tasks`` held-out
tasks, the mean return of ``eval.num_trajectories`` trajectories after 0, 1, ..., ``eval.max_steps`` inner steps of
size alpha, then alpha * ``eval.lr_decay`` (alpha/2 in the paper), each mean with its 95 % confidence interval
over the tasks, and a randomly initialised policy adapted the same way beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax._src.app.algorithms import algorithm_spec, build_learner
from metajax._src.app.experiment_base import NULL_NOTE, Experiment, build_outer_opt
from metajax._src.app.progress import say
from metajax._src.app.runparams import split_run_params
from metajax._src.app.runtime import Runtime
from metajax._src.base import MetaState, Task, check_learning_rate, check_positive_int
from metajax._src.evaluation import summarize
from metajax._src.files import strict_json
from metajax._src.inner import make_inner_opt
from metajax._src.meta_sgd import MetaSGDParams, scale_by_learned_rates
from metajax._src.meta_step import MetaStep
from metajax._src.models import Model
from metajax._src.rl.envs import Environment, bernoulli_bandit, cartpole, navigation2d
from metajax._src.rl.estimators import ESTIMATORS, inner_surrogate
from metajax._src.rl.maml_rl import AdvantageSpec, MetaRL, maml_rl, maml_trpo_step
from metajax._src.rl.policies import Policy, categorical_mlp, gaussian_mlp
from metajax._src.rl.rollout import episode_returns, sample_trajectories, trajectory_log_probs
from metajax._src.rl.trpo import check_trpo_args

TRPO_KEYS = ("max_kl", "cg_iters", "cg_damping", "ls_max_steps", "ls_backtrack_ratio")
TRPO_ALGORITHMS = ("maml", "fomaml")
"""The algorithms ``outer.opt="trpo"`` takes (MAML-TRPO with the exact or the first-order meta-gradient)."""


def _prefixed(prefix: str, check: Any, *args: Any) -> Any:
    """Run ``check(*args)``, naming the config section in its ``ValueError``."""
    try:
        return check(*args)
    except ValueError as err:
        raise ValueError(f"{prefix}{err}") from None


def build_env(config: Any) -> Environment:
    """The environment a config's ``task`` and ``env`` section name."""
    e = config.env
    horizon = check_positive_int("env.horizon", e.get("horizon", 1))
    if config.task == "navigation2d":
        return _prefixed("env.", navigation2d, e.actions, -0.5, 0.5, horizon)
    if config.task == "cartpole":
        ranges = {k: tuple(e[k]) for k in ("masscart", "masspole", "length") if k in e}
        return _prefixed("env.", lambda: cartpole(**ranges, horizon=horizon))
    return _prefixed("env.", bernoulli_bandit, e.num_arms)


def build_policy(config: Any, env: Environment) -> Policy:
    """The policy of the config's ``model`` section: Gaussian for continuous actions, categorical for discrete."""
    m = config.model
    for i, width in enumerate(m.hidden):
        check_positive_int(f"model.hidden[{i}]", width)
    if env.action_space.kind == "continuous":
        return _prefixed(
            "model.", gaussian_mlp, env.action_space.dim, tuple(m.hidden), m.activation, m.get("init_std", 1.0)
        )
    return _prefixed("model.", categorical_mlp, env.action_space.dim, tuple(m.hidden), m.activation)


def advantage_spec(config: Any) -> AdvantageSpec:
    r = config.returns
    return AdvantageSpec(r.gamma, r.gae_lambda, r.baseline, r.normalize).check("returns")


def check_trpo_config(outer: Any) -> dict[str, Any]:
    """The TRPO settings of an ``outer`` section, checked (a ``ValueError`` naming ``outer.KEY``)."""
    kw = {k: outer[k] for k in TRPO_KEYS}
    _prefixed("outer.", check_trpo_args, *kw.values())
    return kw


def trpo_meta_step(meta: MetaRL, trpo: dict[str, Any], skip_nonfinite: bool = False) -> MetaStep:
    """MAML-TRPO as a :class:`~metajax._src.meta_step.MetaStep`: the meta-state convention of every run.

    ``init(meta_params, model_state, key)`` keeps the model state (the DiCE log-weight's zero) and the run's key;
    ``step`` draws meta-step ``s``'s trajectories with ``fold_in(key, s)`` (task ``i`` with its ``i``-th split, the
    keys the learners' meta-step hands its tasks) and takes :func:`~metajax._src.rl.maml_rl.maml_trpo_step`. TRPO
    keeps no optimiser state (``optax.EmptyState``).
    """

    def init(meta_params, model_state=None, key=None):
        del meta_params
        if key is None:
            raise ValueError("MAML-TRPO samples trajectories: its meta-state needs a PRNG key.")
        return MetaState(optax.EmptyState(), jnp.zeros((), jnp.int32), model_state, key)

    def step(meta_params, state, tasks):
        key = jax.random.fold_in(state.key, state.step)
        new_params, m = maml_trpo_step(meta, meta_params, tasks.support, key, **trpo)
        info = m.trpo
        metrics = {
            "query_loss": info.loss_before,
            "loss_after": info.loss_after,
            "kl": info.kl_after,
            "accepted": info.accepted.astype(jnp.float32),
            "backtracks": info.backtracks.astype(jnp.float32),
            "step_norm": info.step_norm,
            "support_return": m.support_return,
            "query_return": m.query_return,
        }
        if skip_nonfinite:
            ok = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(new_params)]))
            new_params = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_params, meta_params)
            metrics["skipped"] = (~ok).astype(jnp.int32)
        return new_params, MetaState(state.opt_state, state.step + 1, state.model_state, state.key), metrics

    return MetaStep(init, step)


def build_rl(config: Any, runtime: Runtime) -> Experiment:
    """Validate a meta-RL config and build its experiment (nothing compiled or sampled yet)."""
    spec = algorithm_spec(config.algorithm)
    if spec.stateful:
        raise ValueError(
            f"algorithm {config.algorithm!r} trains a model with running statistics; meta-RL policies have none. "
            "Use maml, fomaml or meta_sgd."
        )
    if config.get("runtime", {}).get("memory_plan", "off") != "off":
        raise ValueError(
            "runtime.memory_plan must be 'off' for meta-RL tasks (its candidates are the few-shot learners' task "
            f"chunks and gradient strategies), got {config.runtime.memory_plan!r}."
        )
    env = build_env(config)
    policy = build_policy(config, env)
    d, inner, ev = config.data, config.inner, config.eval
    for name in ("meta_batch_size", "num_trajectories", "num_query_trajectories"):
        check_positive_int(f"data.{name}", d[name])
    check_positive_int("inner.steps", inner.steps)
    check_learning_rate("inner.lr", inner.lr)
    if inner.estimator not in ESTIMATORS:
        raise ValueError(f"inner.estimator must be one of {ESTIMATORS}, got {inner.estimator!r}.")
    check_positive_int("eval.num_tasks", ev.num_tasks)
    check_positive_int("eval.num_trajectories", ev.num_trajectories)
    check_positive_int("eval.max_steps", ev.max_steps)
    if not 0 < ev.lr_decay <= 1:
        raise ValueError(f"eval.lr_decay must be in (0, 1], got {ev.lr_decay!r}.")
    trpo = config.outer.opt == "trpo"
    if trpo:
        if config.algorithm not in TRPO_ALGORITHMS:
            raise ValueError(
                f"outer.opt='trpo' takes algorithm in {TRPO_ALGORITHMS} (MAML-TRPO), got {config.algorithm!r}; "
                "use an Optax outer optimiser (outer.opt='adam') for it."
            )
        trpo_kw = check_trpo_config(config.outer)
        outer_opt = optax.identity()  # unused: the outer step is TRPO's
    else:
        outer_opt = build_outer_opt(config.outer, config.train.num_steps)
    first_order = config.algorithm == "fomaml" or inner.get("gradient", "exact") == "first_order"
    adv = advantage_spec(config)
    meta = maml_rl(
        env,
        policy,
        inner.steps,
        inner_lr=inner.lr,
        estimator=inner.estimator,
        gradient="first_order" if first_order else "exact",
        num_trajectories=d.num_trajectories,
        num_query_trajectories=d.num_query_trajectories,
        horizon=env.horizon,
        advantages=adv,
    )
    learner = build_learner(
        config.algorithm,
        meta.loss_fn,
        inner,
        has_aux=True,
        query_loss_fn=meta.query_loss_fn,
        task_chunk=runtime.task_chunk,
        stateful=True,
        state_gradient=True,
    )
    if trpo:
        learner = learner._replace(name=f"{config.algorithm}_trpo")
    model = Model(
        init=lambda key: (policy.init(key, env.obs_dim), meta.init_state()),
        apply=policy.apply,
        input_shape=(env.obs_dim,),
    )

    def sample_tasks(key):
        tasks = env.sample_tasks(key, d.meta_batch_size)
        return Task(tasks, tasks)

    exp = Experiment(
        config,
        model,
        learner,
        outer_opt,
        meta.loss_fn,
        sample_tasks,
        make_inner_opt("sgd", inner.lr),
        evaluate=lambda run_params, run_dir, tag="final", progress=None: evaluate_rl(
            exp, meta, run_params, Path(run_dir), tag
        ),
        held_out=lambda num, seed: sample_tasks_n(env, num, seed),
        has_aux=True,
        runtime=runtime,
        meta_step_for=(lambda lrn, skip_nonfinite=False, mesh=None: trpo_meta_step(meta, trpo_kw, skip_nonfinite))
        if trpo
        else None,
        keeps_state=True,
    )
    return exp


def sample_tasks_n(env: Environment, num: int, seed: int) -> Task:
    tasks = env.sample_tasks(jax.random.PRNGKey(seed), num)
    return Task(tasks, tasks)


# -- the test protocol ------------------------------------------------------------------------------------------


def adaptation_rollouts(meta: MetaRL, num_trajectories: int, scales: tuple[float, ...], num_shown: int) -> Any:
    """``run(params, tx, task, key) -> (returns, observations, masks)``: inner policy-gradient steps with the
    optax transformation ``tx`` (its update times ``scales[t]`` at step ``t``), on fresh trajectories before each
    step and after the last. ``returns`` has shape ``(len(scales) + 1,)``; ``observations`` and ``masks`` keep the
    first ``num_shown`` trajectories of every step (for the plots)."""
    env, policy = meta.env, meta.policy

    def run(params, tx, task, key):
        p, returns, obs, masks = params, [], [], []
        for t in range(len(scales) + 1):
            traj = sample_trajectories(env, policy, p, task, jax.random.fold_in(key, t), num_trajectories, env.horizon)
            returns.append(jnp.mean(episode_returns(traj)))
            obs.append(traj.observations[:num_shown])
            masks.append(traj.masks[:num_shown])
            if t == len(scales):
                break
            advantages = meta.support_advantages(traj).advantages

            def loss(q, traj=traj, advantages=advantages):
                log_probs = trajectory_log_probs(policy, q, traj)
                return -inner_surrogate(meta.estimator, log_probs, advantages, traj.masks)

            grads = jax.grad(loss)(p)
            updates, _ = tx.update(grads, tx.init(p), p)
            p = jax.tree_util.tree_map(lambda a, u, s=scales[t]: a + jnp.asarray(s, a.dtype) * u, p, updates)
        return jnp.stack(returns), jnp.stack(obs), jnp.stack(masks)

    return run


def inner_transform(
    config: Any, meta_params: Any, fixed_rate: optax.GradientTransformation
) -> tuple[Any, optax.GradientTransformation, str]:
    """The policy parameters, the inner update (``-rate * grad``) and its description, from meta-parameters:
    Meta-SGD's learned rates, else ``fixed_rate`` (``optax.scale(-inner.lr)``)."""
    if isinstance(meta_params, MetaSGDParams):
        granularity = config.inner.get("granularity", "parameter")
        return meta_params.params, scale_by_learned_rates(meta_params.lrs, granularity), "learned Meta-SGD rates"
    return meta_params, fixed_rate, f"alpha={config.inner.lr}"


def evaluate_rl(exp: Experiment, meta: MetaRL, run_params: Any, run_dir: Path, tag: str = "final") -> dict[str, Any]:
    """The MAML paper's test protocol; writes ``eval.json``, ``eval.md``, ``curves.npz`` and the plots."""
    del tag  # one evaluation per run: meta-RL runs have no validation checkpoint
    cfg, ev = exp.config, exp.config.eval
    meta_params, _ = split_run_params(run_params)
    scales = (1.0,) + (float(ev.lr_decay),) * (ev.max_steps - 1)
    shown = 5
    run = adaptation_rollouts(meta, ev.num_trajectories, scales, shown)
    key = jax.random.PRNGKey(ev.seed)
    k_tasks, k_roll, k_init = jax.random.split(key, 3)
    tasks = meta.env.sample_tasks(k_tasks, ev.num_tasks)
    keys = jax.random.split(k_roll, ev.num_tasks)
    fixed_rate = optax.scale(-cfg.inner.lr)
    policy_params, tx, rule = inner_transform(cfg, meta_params, fixed_rate)
    random_params = meta.policy.init(k_init, meta.env.obs_dim)
    inits = {exp.learner.name: (policy_params, tx), "random": (random_params, fixed_rate)}
    curves, rollouts, compiled = {}, {}, {}
    for name, (params, transform) in inits.items():
        if id(transform) not in compiled:  # one program per inner rule: MAML's init and the random one share it
            compiled[id(transform)] = jax.jit(
                jax.vmap(lambda p, t, k, transform=transform: run(p, transform, t, k), (None, 0, 0))
            )
        returns, obs, masks = jax.device_get(compiled[id(transform)](params, tasks, keys))
        curves[name], rollouts[name] = np.asarray(returns, np.float64), (np.asarray(obs), np.asarray(masks))
    steps = list(range(ev.max_steps + 1))
    results = {name: summarize(c, steps) for name, c in curves.items()}
    actions = cfg.env.get("actions") if cfg.task == "navigation2d" else None
    lrs = [cfg.inner.lr * s for s in scales]
    record = {
        "env": meta.env.name,
        "actions": actions,
        "num_tasks": ev.num_tasks,
        "num_trajectories": ev.num_trajectories,
        "horizon": meta.env.horizon,
        "inner_lrs": lrs,
        "inner_rule": rule,
        "random_inner_lrs": lrs,
        "metric": "mean undiscounted episode return of the trajectories sampled after n inner steps",
        "results": results,
        "note": NULL_NOTE,
    }
    (run_dir / "eval.json").write_text(strict_json(record))
    table = return_table(results)
    convention = ""
    if actions is not None:
        convention = (
            f" Actions: {actions!r} ("
            + (
                "the MAML paper's code: policy output in [-1, 1] scaled to +-0.1"
                if actions == "normalized"
                else "pytorch-maml-rl: raw actions clipped to [-0.1, 0.1]"
            )
            + ")."
        )
    steps_text = ", ".join(f"{lr:g}" for lr in lrs)
    (run_dir / "eval.md").write_text(
        f"{meta.env.name}, {ev.num_tasks} held-out tasks, {ev.num_trajectories} trajectories per inner step, horizon "
        f"{meta.env.horizon}.{convention} Mean episode return after n inner policy-gradient steps "
        f"({exp.learner.name}: {rule}, scaled by {', '.join(f'{s:g}' for s in scales)}; random init: step sizes "
        f"{steps_text}); ± is the 95% confidence interval over the tasks.\n\n{table}"
    )
    np.savez_compressed(run_dir / "curves.npz", **curves)
    try:
        from metajax._src.app.plots import plot_navigation_trajectories, plot_rl_adaptation

        plot_rl_adaptation(run_dir / "adaptation.png", curves, meta.env.name, actions)
        if cfg.task == "navigation2d":
            plot_navigation_trajectories(
                run_dir / "trajectories.png",
                np.asarray(tasks),
                rollouts,
                min(ev.get("num_examples", 4), ev.num_tasks),
                actions,
            )
    except ImportError as err:  # matplotlib is a dependency, but do not lose the numbers over a plot
        say(f"plot skipped: {err}")
    return {"results": results, "table": table}


def return_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """A markdown table: one row per number of inner steps, the mean return ± 95% CI of each initialisation."""
    names = list(results)
    lines = ["| inner steps | " + " | ".join(f"{n} return (mean ± 95% CI)" for n in names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for i, row in enumerate(results[names[0]]):
        cells = [str(row["steps"])] + [f"{results[n][i]['mean']:.2f} ± {results[n][i]['ci95']:.2f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
