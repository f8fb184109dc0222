"""Few-shot classification (Omniglot, Mini-ImageNet, CIFAR-FS, FC100, CUB): build from a config, validate, evaluate.

Protocol: meta-train on episodes from the training classes; every
``train.eval_every`` steps score ``train.val_tasks`` validation episodes
(transductive batch norm) and keep the best meta-parameters; at the end score
``eval.num_tasks`` test episodes with ``eval.queries`` query examples per
class after ``eval.steps`` inner steps, reporting mean accuracy with a 95%
confidence interval separately for transductive and non-transductive batch
norm (see :mod:`metajax.models`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from metajax._src.app.algorithms import REGISTRY, algorithm_spec
from metajax._src.app.configs import with_gradient
from metajax._src.app.progress import Progress
from metajax._src.app.runparams import split_run_params
from metajax._src.app.runtime import Runtime
from metajax._src.base import Task, check_positive_int
from metajax._src.data import omniglot
from metajax._src.data.episodes import check_episode_args, episode_spec, sample_episodes
from metajax._src.data.miniimagenet import load_miniimagenet
from metajax._src.data.tfds_sets import load_tfds_fewshot
from metajax._src.data.tieredimagenet import host_episodes, load_tieredimagenet, tiered_episode_sampler, to_float
from metajax._src.evaluation import adaptation_scorer, mean_ci
from metajax._src.files import strict_json
from metajax._src.losses import (
    cross_entropy_loss,
    cross_entropy_query_loss,
    stateful_cross_entropy_loss,
    stateful_cross_entropy_query_loss,
)
from metajax._src.models import check_compute_dtype, conv4, conv4_per_step
from metajax._src.resnet import resnet12, resnet12_stateful

MODELS = ("conv4", "resnet12")
"""Backbones of the few-shot experiments (``model.name``): Conv4 (``model.filters``) and ResNet-12
(``model.widths``, ``model.drop_rate`` for ``mamlpp``)."""

BN_POLICIES = ("transductive", "support", "running")
"""Batch-norm policies of the evaluation (:mod:`metajax.models`): ``transductive`` normalises the query batch with
its own statistics, ``support`` (non-transductive) with the support set's, ``running`` (non-transductive, models
with running statistics: ``mamlpp``) with the running statistics of the last inner step."""

POLICY_MODES = {"transductive": "batch", "support": "support", "running": "running"}
"""The batch-norm mode of :func:`metajax.models.conv4_per_step` for each evaluation policy."""


@dataclasses.dataclass(frozen=True)
class Episodes:
    """The shape of the episodes of one phase: ``ways`` classes, ``shots`` support and ``queries`` query
    examples per class."""

    ways: int
    shots: int
    queries: int


def build_model(c: Any, ways: int, size: int, channels: int, compute_dtype: str, stateful: bool):
    """The backbone ``model.name`` and its support loss: a stateful model (running statistics, per-step batch
    norm) for ``mamlpp``, else a stateless one."""
    m = c.model
    name = m.get("name", "conv4")
    if stateful:
        per_step = m.get("per_step_bn", True) or m.get("per_step_stats", True)
        options = {
            "num_steps": c.inner.steps if per_step else None,
            "per_step_weights": m.get("per_step_bn", True),
            "per_step_stats": m.get("per_step_stats", True),
            "momentum": m.get("bn_momentum", 0.1),
            "conv": m.conv,
        }
        if name == "resnet12":
            drop_rate = m.get("drop_rate", 0.0)
            model = resnet12_stateful(ways, tuple(m.widths), size, channels, drop_rate=drop_rate, **options)
        else:
            model = conv4_per_step(ways, m.filters, size, channels, **options)
        return model, stateful_cross_entropy_loss(model)
    if name == "resnet12":
        model = resnet12(ways, tuple(m.widths), size, channels, conv=m.conv, compute_dtype=compute_dtype)
    else:
        downsample = m.get("downsample", "pool")
        model = conv4(ways, m.filters, size, channels, conv=m.conv, downsample=downsample, compute_dtype=compute_dtype)
    return model, cross_entropy_loss(model.apply)


def load_splits(c: Any) -> tuple[Any, dict[str, jax.Array], dict[str, tuple[int, int]], tuple[int, ...]]:
    """The few-shot task's splits: ``(host, images, sizes, shape)``.

    ``host``: tiered-ImageNet's splits memory-mapped on the host (``None`` otherwise); ``images``: the other
    tasks' splits on the device (``{}`` for tiered-ImageNet); ``sizes``: ``{split: (classes, images in the
    smallest class)}``; ``shape``: one image's shape.
    """
    d = c.data
    if c.task == "tiered_imagenet":
        host = load_tieredimagenet(d.data_dir, d.get("allow_pickle", False))
        sizes = {k: (v.num_classes, int(v.counts.min())) for k, v in host.items()}  # classes of different sizes
        return host, {}, sizes, tuple(host["train"].images.shape[1:])
    if c.task == "omniglot":
        parts = omniglot.load_omniglot(d.data_dir, d.split, d.rotations, d.split_seed)
    elif c.task == "miniimagenet":
        parts = load_miniimagenet(d.data_dir, d.get("allow_pickle", False))
    else:
        parts = load_tfds_fewshot(c.task, d.data_dir, **({"crop": d.crop} if c.task == "cub" else {}))
    sizes = {k: (len(v.character), v.images.shape[1]) for k, v in parts.items()}
    images = {k: jnp.asarray(v.images) for k, v in parts.items()}
    return None, images, sizes, tuple(parts["train"].images.shape[2:])


class FewShot:
    """A few-shot classification experiment: the data on the device, the backbone, the learner and the
    validation and test protocol.

    The config is read once, here; the methods use the plain values kept from it.
    """

    def __init__(self, config: Any, learner_factory: Callable, runtime: Runtime, loaded: Any = None):
        c, d = config, config.data
        for name in ("ways", "shots", "queries", "meta_batch_size"):
            check_positive_int(f"data.{name}", d[name])
        for name in ("ways", "shots", "queries", "num_tasks", "steps"):
            check_positive_int(f"eval.{name}", c.eval[name])
        self.model_name = c.model.get("name", "conv4")
        if self.model_name not in MODELS:
            raise ValueError(f"model.name must be one of {MODELS}, got {self.model_name!r}.")
        if self.model_name == "conv4":
            check_positive_int("model.filters", c.model.filters)
        if c.model.get("downsample", "pool") not in ("pool", "stride"):
            raise ValueError(f"model.downsample must be 'pool' or 'stride', got {c.model.downsample!r}.")
        if c.model.get("downsample", "pool") == "stride" and c.model.conv not in ("auto", "xla"):
            raise ValueError(
                f"model.conv={c.model.conv!r} has no stride-2 form: model.downsample='stride' takes model.conv "
                f"'xla' or 'auto'."
            )
        compute_dtype = check_compute_dtype(c.model.get("compute_dtype", "float32"))
        spec = algorithm_spec(c.algorithm)
        self.stateful = spec.stateful
        for policy in c.eval.bn:
            if policy not in BN_POLICIES:
                raise ValueError(f"eval.bn entries must be in {BN_POLICIES}, got {policy!r}.")
            if policy == "running" and not self.stateful:
                keeping = [repr(name) for name, other in REGISTRY.items() if other.stateful]
                many = f"algorithms {', '.join(keeping)} keep"
                which = f"algorithm {keeping[0]} keeps" if len(keeping) == 1 else many
                raise ValueError(
                    f"eval.bn 'running' needs running statistics, which only {which}; got algorithm "
                    f"{c.algorithm!r}. Use 'transductive' and 'support'."
                )
        if self.stateful:
            if c.eval.steps != c.inner.steps:
                raise ValueError(
                    f"eval.steps must equal inner.steps for algorithm {c.algorithm!r} (its learned rates and per-step "
                    f"batch norm exist for {c.inner.steps} steps), got eval.steps={c.eval.steps}."
                )
            if c.model.get("downsample", "pool") != "pool" or compute_dtype != "float32":
                raise ValueError(
                    f"algorithm {c.algorithm!r} uses conv4_per_step: model.downsample must be 'pool' and "
                    f"model.compute_dtype 'float32', got {c.model.get('downsample', 'pool')!r} and {compute_dtype!r}."
                )
        if d.order not in ("class", "shot"):
            raise ValueError(f"data.order must be 'class' or 'shot', got {d.order!r}.")
        self.task, self.runtime = c.task, runtime
        self.train_episodes = Episodes(d.ways, d.shots, d.queries)
        self.eval_episodes = Episodes(c.eval.ways, c.eval.shots, c.eval.queries)
        self.meta_batch_size, self.order = d.meta_batch_size, d.order
        self.eval_steps, self.eval_inner_batch_size = c.eval.steps, c.eval.inner_batch_size
        self.eval_num_tasks, self.eval_seed, self.bn_policies = c.eval.num_tasks, c.eval.seed, tuple(c.eval.bn)
        self.val_tasks = c.train.get("val_tasks", 0)
        self.inner_description = f"{c.inner.opt} lr={c.inner.lr}"
        if "lslr" in algorithm_spec(c.algorithm).inner_keys and c.inner.get("lslr", True):
            self.inner_description = f"SGD with learned per-layer per-step rates (from {c.inner.lr})"
        self._scorers: dict[str, Callable] = {}
        # the splits as loaded, the device copies and the episode sizes: another experiment of the same data
        # settings (the memory planner's) takes them as they are
        self.loaded = load_splits(c) if loaded is None else loaded
        self.host, self.images, sizes, shape = self.loaded
        # Fail before compiling anything if the episodes cannot be drawn.
        check_episode_args(*sizes["train"], d.ways, d.shots, d.queries)
        for split in ("val", "test"):
            check_episode_args(*sizes[split], c.eval.ways, c.eval.shots, c.eval.queries)
        if c.eval.ways != d.ways:
            raise ValueError(f"eval.ways={c.eval.ways} must equal data.ways={d.ways} (the head has {d.ways} outputs).")
        self.counts = {k: n for k, (n, _) in sizes.items()}
        if self.host is not None:
            e = self.train_episodes
            self._host_train = tiered_episode_sampler(
                self.host["train"], self.meta_batch_size, e.ways, e.shots, e.queries
            )
        channels = shape[2] if len(shape) == 3 else 1
        self.model, self.loss_fn = build_model(c, d.ways, shape[0], channels, compute_dtype, self.stateful)
        self._learner_factory, self._inner = learner_factory, c.inner
        self._train_spec = episode_spec(d.ways, d.shots, d.queries, (*self.model.input_shape,))
        self.learner = learner_factory(self.loss_fn, has_aux=True, task_spec=self._train_spec)
        # the learner that adapts at evaluation: the training one, unless iMAML evaluates with another lambda
        # (eval.lam; 0 is plain gradient descent from the meta-parameters, as the iMAML authors' evaluation)
        self.eval_learner = self.learner
        eval_lam = c.eval.get("lam")
        if eval_lam is not None:
            if "lam" not in algorithm_spec(c.algorithm).inner_keys:
                raise ValueError(f"eval.lam applies to algorithm 'imaml' only, got algorithm {c.algorithm!r}.")
            if isinstance(eval_lam, bool) or not isinstance(eval_lam, (int, float)) or not eval_lam >= 0:
                raise ValueError(f"eval.lam must be a number >= 0, got {eval_lam!r}.")
            inner = ConfigDict(c.inner.to_dict())
            inner.lam = float(eval_lam) if eval_lam > 0 else inner.lam
            self.eval_learner = learner_factory(
                self.loss_fn,
                algorithm="imaml" if eval_lam > 0 else "fomaml",
                inner=inner,
                has_aux=True,
                task_spec=self._train_spec,
            )

    def train_learner(self, gradient: str | None, task_chunk: int | None) -> Any:
        """The training learner with another ``inner.gradient`` (``None``: the config's) and task chunk."""
        return self._learner_factory(
            self.loss_fn,
            inner=with_gradient(self._inner, gradient),
            has_aux=True,
            task_spec=self._train_spec,
            task_chunk=task_chunk,
        )

    def sample_train(self, key: jax.Array, *data: jax.Array) -> Task:
        """A training batch: drawn on the device from ``data[0]`` (the training images), or for data kept on the
        host (tiered-ImageNet) through a host callback (``data`` empty)."""
        e = self.train_episodes
        if self.host is not None:
            tasks = self._host_train(key)
        else:
            tasks = sample_episodes(key, data[0], self.meta_batch_size, e.ways, e.shots, e.queries)
        if self.order == "shot":  # interleave classes so consecutive inner minibatches mix them
            tasks = jax.tree_util.tree_map(jax.vmap(lambda x: _shot_major(x, e.ways)), tasks)
        return tasks

    def episodes(self, split: str, num: int, seed: int) -> Task:
        e = self.eval_episodes
        key = jax.random.PRNGKey(seed)
        if self.host is not None:
            return to_float(host_episodes(np.asarray(key), self.host[split], num, e.ways, e.shots, e.queries))
        return sample_episodes(key, self.images[split], num, e.ways, e.shots, e.queries)

    def query_loss(self, policy: str) -> Callable:
        """``fn(params, query, support) -> (loss, aux)``; for ``mamlpp`` ``fn(params, query, support, state)`` (the
        state after adaptation, read at the last inner step)."""
        if not self.stateful:
            return cross_entropy_query_loss(self.model.apply, bn=policy)
        loss = stateful_cross_entropy_query_loss(self.model, POLICY_MODES[policy])
        last = self.eval_steps - 1

        def query_loss(params, query, support, state):
            return loss(params, state, query, support, jnp.int32(last), None)

        return query_loss

    def scorer(self, policy: str) -> Callable:
        """The compiled evaluation for a batch-norm ``policy`` (built once: validation reuses it every time)."""
        if policy not in self._scorers:
            rt = self.runtime
            self._scorers[policy] = adaptation_scorer(
                self.eval_learner,
                self.query_loss(policy),
                self.eval_steps,
                rt.task_chunk,
                self.eval_inner_batch_size,
                rt.eval_mesh,
                rt.eval_tasks_per_call,
            )
        return self._scorers[policy]

    def _several_calls(self, num_tasks: int) -> bool:
        """Whether scoring ``num_tasks`` tasks takes more than one call (then progress is worth reporting)."""
        size = self.runtime.eval_tasks_per_call
        return size is not None and num_tasks > size

    def validate(self, meta_params: Any, on_chunk: Callable[[int, int], None] | None = None) -> float:
        """Mean accuracy on ``train.val_tasks`` validation episodes (transductive batch norm).

        ``on_chunk(done, total)`` is called after each evaluation call when the validation takes more than one.
        """
        tasks = self.episodes("val", self.val_tasks, self.eval_seed + 1)
        if not self._several_calls(self.val_tasks):
            on_chunk = None  # one call: nothing to report in between
        meta_params, model_state = split_run_params(meta_params)
        _, acc = jax.device_get(self.scorer("transductive")(meta_params, tasks, on_chunk, model_state))
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

        ``progress``: when the tasks take more than one evaluation call, a bar with
        rate and ETA on a terminal (``None``) or a log line per call (``False``, or off a terminal).
        """
        num, e = self.eval_num_tasks, self.eval_episodes
        tasks = self.episodes(split, num, self.eval_seed)
        results = {}
        for policy in self.bn_policies:
            bar = None
            if self._several_calls(num):
                bar = Progress(num, progress, desc=f"evaluate {tag} ({policy} BN)", every=1, unit="task")
            on_chunk = None if bar is None else (lambda done, total, bar=bar: bar.update(done, {}))
            mp, model_state = split_run_params(meta_params)
            score = self.scorer(policy)(mp, tasks, on_chunk, model_state)
            loss, acc = (np.asarray(x) for x in jax.device_get(score))
            if bar is not None:
                bar.close()
            m, ci = mean_ci(acc)
            results[policy] = {"accuracy": m, "ci95": ci, "loss": float(np.mean(loss)), "num_tasks": num}
        lines = [
            f"{self.task} ({self.counts[split]} {split} classes), {e.ways}-way {e.shots}-shot, "
            f"{e.queries} queries per class, {num} tasks, {self.eval_steps} inner steps of {self.inner_description}.",
            "",
            "| batch norm | accuracy (mean ± 95% CI) | query loss |",
            "|---|---|---|",
        ]
        for policy, r in results.items():
            lines.append(f"| {policy} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} % | {r['loss']:.4f} |")
        table = "\n".join(lines) + "\n"
        (run_dir / f"eval_{tag}.json").write_text(strict_json(results))
        (run_dir / f"eval_{tag}.md").write_text(table)
        return {"results": results, "table": table}


def _shot_major(x: jax.Array, ways: int) -> jax.Array:
    n = x.shape[0] // ways
    return x.reshape((ways, n, *x.shape[1:])).swapaxes(0, 1).reshape(x.shape)
