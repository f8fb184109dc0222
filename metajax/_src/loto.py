"""Leave-one-task-out (LOTO) cross-validation of meta-learning: does meta-training memorise its tasks?

On a finite pool of N training tasks, fold ``i`` meta-trains on the other
N - 1 tasks and measures the post-adaptation risk (query loss after adapting
on the support set) on task ``i``. The risk-inflation ratio

    mean held-out risk / mean risk on the tasks each fold trained on

is about 1 when the learner generalises to new tasks and large when it has
memorised its meta-training tasks. All N folds are trained at once with
``vmap`` (each fold has its own parameters and optimiser state), so LOTO
costs one compiled training loop rather than N.

:func:`leave_one_group_out` is the same check when tasks are drawn from a
class pool rather than a finite list: fold ``g`` meta-trains on episodes of
the classes outside group ``g`` and compares the post-adaptation risk on
fresh episodes of group ``g``'s classes with that on fresh episodes of its
own training classes. With Omniglot's alphabets as groups
(:func:`leave_one_alphabet_out`) it asks whether what was meta-learned
transfers to a writing system never seen.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax._src.base import MetaLearner, Task, check_positive_int
from metajax._src.data.episodes import check_episode_args, sample_episodes
from metajax._src.learner import post_adaptation_risk
from metajax._src.meta_step import make_meta_step


def exclude_and_sample(key: jax.Array, num_tasks: int, excluded: jax.Array, batch: int) -> jax.Array:
    """``batch`` distinct task indices from ``range(num_tasks)`` without ``excluded`` (traceable)."""
    scores = jax.random.uniform(key, (num_tasks,))
    scores = jnp.where(jnp.arange(num_tasks) == excluded, -1.0, scores)
    return jax.lax.top_k(scores, batch)[1]


def loto(
    learner: MetaLearner,
    outer_opt: optax.GradientTransformation,
    init_params: Any,
    pool: Task,
    num_steps: int,
    meta_batch_size: int,
    key: jax.Array,
    num_bootstrap: int = 2000,
    folds: Any = None,
    fold_batch: int | None = None,
) -> dict[str, Any]:
    """Leave-one-task-out cross-validation on a pool of tasks, all folds trained in parallel.

    Args:
      learner: any :class:`MetaLearner`.
      outer_opt: the meta-optimiser.
      init_params: model parameters every fold starts from.
      pool: a task batch of N tasks (leading task axis).
      num_steps: meta-steps per fold.
      meta_batch_size: tasks per meta-step (at most N - 1).
      key: PRNG key (the folds share it, so they differ only by the left-out task).
      num_bootstrap: bootstrap resamples of the folds for the ratio's interval.
      folds: which tasks to leave out (default all N). A random subset gives
        an unbiased estimate of the mean held-out risk at a fraction of the
        cost when N is large.
      fold_batch: ``None`` (default) vmaps all folds at once; an int runs
        them ``fold_batch`` at a time (``lax.map``) to bound memory.

    Returns:
      ``held_out`` (F,) risk of each fold on its left-out task; ``seen`` (F,)
      each fold's mean risk on its training tasks; ``ratio`` (mean held-out /
      mean seen) with a 95% bootstrap interval ``ratio_ci`` over folds; and
      ``pooled_before`` (N,) the risk of the common initialisation.
    """
    n = jax.tree_util.tree_leaves(pool)[0].shape[0]
    check_positive_int("num_steps", num_steps)
    check_positive_int("meta_batch_size", meta_batch_size)
    if n < 2:
        raise ValueError(f"pool must hold at least 2 tasks for leave-one-out, got {n}.")
    if meta_batch_size > n - 1:
        raise ValueError(f"meta_batch_size={meta_batch_size} exceeds the {n - 1} tasks each fold trains on.")
    ms = make_meta_step(learner, outer_opt)
    mp0 = learner.init(init_params)

    def fold(i):
        def body(carry, step):
            mp, st = carry
            idx = exclude_and_sample(jax.random.fold_in(key, step), n, i, meta_batch_size)
            mp, st, _ = ms.step(mp, st, jax.tree_util.tree_map(lambda x: x[idx], pool))
            return (mp, st), None

        (mp, _), _ = jax.lax.scan(body, (mp0, ms.init(mp0)), jnp.arange(num_steps))
        risk = post_adaptation_risk(learner, mp, pool)
        others = jnp.arange(n) != i
        return risk[i], jnp.sum(jnp.where(others, risk, 0.0)) / (n - 1)

    folds = jnp.arange(n) if folds is None else jnp.asarray(folds)
    held, seen = _run_folds(fold, folds, fold_batch)
    before = jax.jit(lambda: post_adaptation_risk(learner, mp0, pool))()
    return {**_inflation(held, seen, num_bootstrap), "pooled_before": np.asarray(before, np.float64)}


def _run_folds(fold, folds: jax.Array, fold_batch: int | None):
    """All folds in one compiled program: ``vmap`` (``fold_batch=None``) or ``lax.map`` in batches."""
    if fold_batch is None:
        run = jax.vmap(fold)
    else:
        check_positive_int("fold_batch", fold_batch)
        run = lambda f: jax.lax.map(fold, f, batch_size=fold_batch)  # noqa: E731
    held, seen = jax.jit(run)(folds)
    return np.asarray(held, np.float64), np.asarray(seen, np.float64)


def _inflation(held: np.ndarray, seen: np.ndarray, num_bootstrap: int) -> dict[str, Any]:
    """The risk-inflation ratio and its 95% bootstrap interval over folds."""
    check_positive_int("num_bootstrap", num_bootstrap)
    rng = np.random.default_rng(0)
    boot = rng.integers(0, held.size, size=(num_bootstrap, held.size))
    ratios = held[boot].mean(axis=1) / seen[boot].mean(axis=1)
    return {
        "held_out": held,
        "seen": seen,
        "ratio": float(held.mean() / seen.mean()),
        "ratio_ci": (float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))),
    }


def leave_one_group_out(
    learner: MetaLearner,
    outer_opt: optax.GradientTransformation,
    init_params: Any,
    images: Any,
    groups: Any,
    *,
    ways: int,
    shots: int,
    queries: int,
    num_steps: int,
    meta_batch_size: int,
    key: jax.Array,
    eval_tasks: int = 100,
    folds: Any = None,
    fold_batch: int | None = 1,
    num_bootstrap: int = 2000,
) -> dict[str, Any]:
    """Leave-one-group-out cross-validation on a class pool (e.g. Omniglot alphabets).

    Args:
      learner: any :class:`MetaLearner` for ``ways``-way episodes.
      outer_opt: the meta-optimiser.
      init_params: model parameters every fold starts from.
      images: uint8 ``(classes, examples, H, W[, C])`` (as the episode sampler takes).
      groups: ``(classes,)`` integer group of each class (e.g. the alphabet).
      ways, shots, queries: the episodes, for training and for measuring risk.
      num_steps, meta_batch_size: meta-training of each fold.
      key: PRNG key; the folds share the training and evaluation keys, so they
        differ only by the group left out.
      eval_tasks: episodes drawn for each of the two risks of a fold.
      folds: which groups to leave out (default: every group).
      fold_batch: folds run side by side (``lax.map`` batch size); ``None``
        vmaps all folds at once (memory grows with the number of folds).
      num_bootstrap: bootstrap resamples of the folds for the ratio's interval.

    Returns:
      ``groups`` (F,) the group of each fold; ``held_out`` (F,) mean risk on
      episodes of the left-out group; ``seen`` (F,) mean risk on fresh episodes
      of the fold's training classes; ``ratio`` with 95% bootstrap ``ratio_ci``;
      ``before_held_out`` / ``before_seen`` (F,) the same risks at the
      initialisation (the ratio there says how much harder a group is anyway).
    """
    images = jnp.asarray(images)
    groups_np = np.asarray(groups)
    if images.ndim not in (4, 5):
        raise ValueError(f"images must be (classes, examples, H, W[, C]), got shape {tuple(images.shape)}.")
    if groups_np.shape != (images.shape[0],):
        raise ValueError(f"groups must have shape ({images.shape[0]},) (one per class), got {groups_np.shape}.")
    check_episode_args(images.shape[0], images.shape[1], ways, shots, queries)
    check_positive_int("num_steps", num_steps)
    check_positive_int("meta_batch_size", meta_batch_size)
    check_positive_int("eval_tasks", eval_tasks)
    present, sizes = np.unique(groups_np, return_counts=True)
    if present.size < 2:
        raise ValueError(f"groups must name at least 2 groups for leave-one-out, got {present.size}.")
    fold_groups = present if folds is None else np.asarray(folds).reshape(-1)
    for g in fold_groups:
        if g not in present:
            raise ValueError(f"folds: group {g} has no classes (groups present: {present.tolist()}).")
        own = int(sizes[present == g][0])
        if own < ways or groups_np.size - own < ways:
            raise ValueError(
                f"folds: group {g} has {own} classes and leaves {groups_np.size - own}; both must be >= ways={ways}."
            )
    ms = make_meta_step(learner, outer_opt)
    mp0 = learner.init(init_params)
    group_of = jnp.asarray(groups_np)
    k_train, k_eval = jax.random.split(key)

    def risks(mp, g):
        held = sample_episodes(k_eval, images, eval_tasks, ways, shots, queries, group_of == g)
        seen = sample_episodes(k_eval, images, eval_tasks, ways, shots, queries, group_of != g)
        return post_adaptation_risk(learner, mp, held).mean(), post_adaptation_risk(learner, mp, seen).mean()

    def fold(g):
        def body(carry, step):
            mp, st = carry
            tasks = sample_episodes(
                jax.random.fold_in(k_train, step), images, meta_batch_size, ways, shots, queries, group_of != g
            )
            mp, st, _ = ms.step(mp, st, tasks)
            return (mp, st), None

        (mp, _), _ = jax.lax.scan(body, (mp0, ms.init(mp0)), jnp.arange(num_steps))
        return risks(mp, g)

    held, seen = _run_folds(fold, jnp.asarray(fold_groups), fold_batch)
    b_held, b_seen = _run_folds(lambda g: risks(mp0, g), jnp.asarray(fold_groups), fold_batch)
    return {
        "groups": fold_groups,
        **_inflation(held, seen, num_bootstrap),
        "before_held_out": b_held,
        "before_seen": b_seen,
    }


def leave_one_alphabet_out(
    learner: MetaLearner,
    outer_opt: optax.GradientTransformation,
    init_params: Any,
    classes: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`leave_one_group_out` with Omniglot alphabets as the groups.

    ``classes`` is a ``ClassImages`` split from ``load_omniglot`` (e.g. its
    ``"train"`` part); rotated copies of a character stay with its alphabet,
    so no fold trains on a rotation of a held-out character. Keyword
    arguments are those of :func:`leave_one_group_out`.
    """
    return leave_one_group_out(learner, outer_opt, init_params, classes.images, classes.alphabet, **kwargs)
