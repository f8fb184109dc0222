"""Few-shot classification experiments (Omniglot, Mini-ImageNet): build from a config, validate, evaluate.

Protocol: meta-train on episodes from the training classes; every
``train.eval_every`` steps score ``train.val_tasks`` validation episodes
(transductive batch norm) and keep the best meta-parameters; at the end score
``eval.num_tasks`` test episodes with ``eval.queries`` query examples per
class after ``eval.steps`` inner steps, reporting mean accuracy with a 95%
confidence interval separately for transductive and non-transductive batch
norm (see ``metajax._src.models``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import metajax as mj
from metajax._src.base import check_positive_int
from metajax._src.data import omniglot
from metajax._src.data.episodes import check_episode_args, episode_spec, sample_episodes
from metajax._src.learner import resolve_task_chunk
from metajax._src.models import conv4, cross_entropy_loss, cross_entropy_query_loss

BN_POLICIES = ("transductive", "support")
# evaluation runs in calls of this many tasks: validation (200) and test (600) share one compiled program
DEFAULT_EVAL_TASKS_PER_CALL = 100


def adaptation_scorer(
    learner: mj.MetaLearner,
    query_loss: Callable,
    num_steps: int,
    task_chunk: int | None,
    batch_size: Any = None,
    mesh: Any = None,
    tasks_per_call: int | None = None,
) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """A compiled ``score(meta_params, tasks, on_chunk=None) -> (loss, accuracy)`` per task after ``num_steps`` steps.

    Build it once and call it for every evaluation: it compiles on the first call for a task-batch shape.
    With a ``mesh`` of several devices (CPU task streams, GPUs) the tasks are split over its devices
    (:func:`metajax.shard_task_map`); every task's numbers come from the same per-task program as on one
    device. With ``tasks_per_call`` a batch of more tasks runs as calls of that many (the last one padded by
    repeating its last task, the padding dropped; rounded up to a multiple of the mesh's devices): one compiled
    program serves every batch size above it (200 validation and 600 test tasks compile once), and
    ``on_chunk(done, total)`` reports after each call.
    """
    tasks_per_call = call_size(tasks_per_call, mesh)

    def run(mp, tasks):
        def one(task):
            res = learner.adapt(mp, task.support, num_steps=num_steps, batch_size=batch_size)
            loss, aux = query_loss(res.params, task.query, task.support)
            return loss, aux["accuracy"]

        if task_chunk is None:
            return jax.vmap(one)(tasks)
        return jax.lax.map(one, tasks, batch_size=task_chunk)

    score = mj.shard_task_map(run, mesh)

    def in_calls(meta_params, tasks, on_chunk: Callable[[int, int], None] | None = None):
        leaves = jax.tree_util.tree_leaves(tasks)
        total = leaves[0].shape[0] if leaves and leaves[0].ndim else 0
        if total == 0:
            raise ValueError("tasks must hold at least one task along a leading task axis, got none.")
        size = total if tasks_per_call is None or total <= tasks_per_call else tasks_per_call
        outs = []
        for start in range(0, total, size):
            num = min(size, total - start)
            out = score(meta_params, _padded_slice(tasks, start, num, size))
            outs.append(out if num == size else _leading(out, 0, num))
            if on_chunk is not None:
                jax.block_until_ready(outs[-1])
                on_chunk(start + num, total)
        return outs[0] if len(outs) == 1 else jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *outs)

    return in_calls


def call_size(tasks_per_call: int | None, mesh: Any = None) -> int | None:
    """Tasks per evaluation call: ``tasks_per_call`` rounded up to a multiple of the mesh's devices.

    A whole number of tasks per device in every call, so only the last call is padded. ``None``: one call.
    """
    if tasks_per_call is None:
        return None
    check_positive_int("tasks_per_call", tasks_per_call)
    return tasks_per_call if mesh is None else -(-tasks_per_call // mesh.devices.size) * mesh.devices.size


def accuracy_after_adaptation(
    learner: mj.MetaLearner,
    meta_params: Any,
    query_loss: Callable,
    tasks: mj.Task,
    num_steps: int,
    task_chunk: int | None,
    batch_size: Any = None,
    mesh: Any = None,
    tasks_per_call: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-task query (loss, accuracy) after ``num_steps`` inner steps (one-off: see :func:`adaptation_scorer`)."""
    score = adaptation_scorer(learner, query_loss, num_steps, task_chunk, batch_size, mesh, tasks_per_call)
    loss, acc = jax.device_get(score(meta_params, tasks))
    return np.asarray(loss), np.asarray(acc)


def mean_ci(x: np.ndarray) -> tuple[float, float]:
    """Mean and 1.96 standard errors."""
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(1.96 * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


class FewShot:
    """An Omniglot experiment built from a config (data on the device, learner, evaluation)."""

    def __init__(self, config: Any, learner_factory: Callable, mesh: Any = None):
        self.config = c = config
        self.mesh = mesh  # evaluation and validation split their tasks over its devices (None: one device)
        self._scorers: dict[str, Callable] = {}
        d = c.data
        for name in ("ways", "shots", "queries", "meta_batch_size"):
            check_positive_int(f"data.{name}", d[name])
        for name in ("ways", "shots", "queries", "num_tasks", "steps"):
            check_positive_int(f"eval.{name}", c.eval[name])
        self.tasks_per_call = c.get("runtime", {}).get("eval_tasks_per_call", DEFAULT_EVAL_TASKS_PER_CALL)
        if self.tasks_per_call is not None:
            check_positive_int("runtime.eval_tasks_per_call", self.tasks_per_call)
        for policy in c.eval.bn:
            if policy not in BN_POLICIES:
                raise ValueError(f"eval.bn entries must be in {BN_POLICIES}, got {policy!r}.")
        if d.order not in ("class", "shot"):
            raise ValueError(f"data.order must be 'class' or 'shot', got {d.order!r}.")
        if c.task == "omniglot":
            parts = omniglot.load_omniglot(d.data_dir, d.split, d.rotations, d.split_seed)
        else:
            from metajax._src.data.miniimagenet import load_miniimagenet

            parts = load_miniimagenet(d.data_dir, d.get("allow_pickle", False))
        # Fail before compiling anything if the episodes cannot be drawn.
        check_episode_args(len(parts["train"].character), parts["train"].images.shape[1], d.ways, d.shots, d.queries)
        for split in ("val", "test"):
            check_episode_args(
                len(parts[split].character), parts[split].images.shape[1], c.eval.ways, c.eval.shots, c.eval.queries
            )
        self.counts = {k: int(len(v.character)) for k, v in parts.items()}
        self.images = {k: jnp.asarray(v.images) for k, v in parts.items()}
        shape = parts["train"].images.shape[2:]
        channels = shape[2] if len(shape) == 3 else 1
        self.model = conv4(d.ways, c.model.filters, shape[0], channels, conv=c.model.conv)
        if c.eval.ways != d.ways:
            raise ValueError(f"eval.ways={c.eval.ways} must equal data.ways={d.ways} (the head has {d.ways} outputs).")
        self.loss_fn = cross_entropy_loss(self.model.apply)
        self.learner = learner_factory(
            self.loss_fn,
            has_aux=True,
            task_spec=episode_spec(d.ways, d.shots, d.queries, (*self.model.input_shape,)),
        )

    def sample_train(self, key: jax.Array, images: jax.Array) -> mj.Task:
        d = self.config.data
        tasks = sample_episodes(key, images, d.meta_batch_size, d.ways, d.shots, d.queries)
        if d.order == "shot":  # interleave classes so consecutive inner minibatches mix them
            tasks = jax.tree_util.tree_map(jax.vmap(lambda x: _shot_major(x, d.ways)), tasks)
        return tasks

    def episodes(self, split: str, num: int, seed: int) -> mj.Task:
        ev = self.config.eval
        return sample_episodes(jax.random.PRNGKey(seed), self.images[split], num, ev.ways, ev.shots, ev.queries)

    def query_loss(self, policy: str) -> Callable:
        return cross_entropy_query_loss(self.model.apply, bn=policy)

    def scorer(self, policy: str) -> Callable:
        """The compiled evaluation for a batch-norm ``policy`` (built once: validation reuses it every time)."""
        if policy not in self._scorers:
            c = self.config
            self._scorers[policy] = adaptation_scorer(
                self.learner,
                self.query_loss(policy),
                c.eval.steps,
                resolve_task_chunk(c.data.task_chunk),
                c.eval.inner_batch_size,
                self.mesh,
                self.tasks_per_call,
            )
        return self._scorers[policy]

    def _several_calls(self, num_tasks: int) -> bool:
        """Whether scoring ``num_tasks`` tasks takes more than one call (then progress is worth reporting)."""
        size = call_size(self.tasks_per_call, self.mesh)
        return size is not None and num_tasks > size

    def validate(self, meta_params: Any, on_chunk: Callable[[int, int], None] | None = None) -> float:
        """Mean accuracy on ``train.val_tasks`` validation episodes (transductive batch norm).

        ``on_chunk(done, total)`` is called after each call of ``runtime.eval_tasks_per_call`` tasks when the
        validation takes more than one.
        """
        c = self.config
        tasks = self.episodes("val", c.train.val_tasks, c.eval.seed + 1)
        if not self._several_calls(c.train.val_tasks):
            on_chunk = None  # one call: nothing to report in between
        _, acc = jax.device_get(self.scorer("transductive")(meta_params, tasks, on_chunk))
        return float(np.mean(acc))

    def evaluate(
        self,
        meta_params: Any,
        run_dir: Path,
        tag: str = "final",
        split: str = "test",
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Score ``eval.num_tasks`` episodes of ``split``; writes ``eval_<tag>.json`` and ``.md``.

        ``progress``: when the tasks take more than one call of ``runtime.eval_tasks_per_call``, a bar with
        rate and ETA on a terminal (``None``) or a log line per call (``False``, or off a terminal).
        """
        from metajax._src.train import Progress

        c, ev = self.config, self.config.eval
        tasks = self.episodes(split, ev.num_tasks, ev.seed)
        results = {}
        for policy in ev.bn:
            bar = None
            if self._several_calls(ev.num_tasks):
                bar = Progress(ev.num_tasks, progress, desc=f"evaluate {tag} ({policy} BN)", every=1, unit="task")
            on_chunk = None if bar is None else (lambda done, total, bar=bar: bar.update(done, {}))
            loss, acc = (np.asarray(x) for x in jax.device_get(self.scorer(policy)(meta_params, tasks, on_chunk)))
            if bar is not None:
                bar.close()
            m, ci = mean_ci(acc)
            results[policy] = {"accuracy": m, "ci95": ci, "loss": float(np.mean(loss)), "num_tasks": ev.num_tasks}
        lines = [
            f"{c.task} ({self.counts[split]} {split} classes), {ev.ways}-way {ev.shots}-shot, "
            f"{ev.queries} queries per class, {ev.num_tasks} tasks, {ev.steps} inner steps of {c.inner.opt} "
            f"lr={c.inner.lr}.",
            "",
            "| batch norm | accuracy (mean ± 95% CI) | query loss |",
            "|---|---|---|",
        ]
        for policy, r in results.items():
            lines.append(f"| {policy} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} % | {r['loss']:.4f} |")
        table = "\n".join(lines) + "\n"
        (run_dir / f"eval_{tag}.json").write_text(json.dumps(results, indent=1))
        (run_dir / f"eval_{tag}.md").write_text(table)
        return {"results": results, "table": table}


def _leading(tree: Any, start: int, num: int) -> Any:
    """Entries ``start .. start + num`` of every leaf's leading axis."""
    return jax.tree_util.tree_map(lambda x: x[start : start + num], tree)


def _padded_slice(tasks: Any, start: int, num: int, size: int) -> Any:
    """Tasks ``start .. start + num``, padded to ``size`` by repeating the last one."""
    out = _leading(tasks, start, num)
    if num == size:
        return out
    return jax.tree_util.tree_map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], size - num, axis=0)]), out)


def _shot_major(x: jax.Array, ways: int) -> jax.Array:
    n = x.shape[0] // ways
    return x.reshape((ways, n, *x.shape[1:])).swapaxes(0, 1).reshape(x.shape)
