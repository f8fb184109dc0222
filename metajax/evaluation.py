"""Evaluating meta-learned initialisations: adaptation curves, few-shot scores, fine-tuning and baselines.

* :func:`adaptation_curves` -- every held-out task's query loss before adaptation and after each inner step,
  in one compiled call; :func:`summarize` and :func:`markdown_table` turn curves into a table (mean with a
  95 % confidence interval over the tasks that did not diverge, the median, the diverged count).
* :func:`adaptation_scorer` / :func:`accuracy_after_adaptation` -- per-task query loss and accuracy after a
  fixed number of inner steps (the few-shot protocol), split over devices and into calls of a fixed size.
* :func:`fine_tune` -- ordinary fine-tuning of several initialisations on each task's support set;
  :func:`joint_training` -- the multi-task ("pretrained") baseline; :func:`plain_adapter` -- adapt any
  initialisation with an Optax optimiser.
* :func:`mean_ci` and :func:`ci95` -- the confidence interval every table here reports.
"""

from metajax._src.evaluation import (
    accuracy_after_adaptation,
    adaptation_curves,
    adaptation_scorer,
    call_size,
    ci95,
    joint_training,
    markdown_table,
    mean_ci,
    plain_adapter,
    summarize,
)
from metajax._src.finetune import fine_tune, summarize_curves, write_report
from metajax._src.inner import make_optimizer

__all__ = [
    "accuracy_after_adaptation",
    "adaptation_curves",
    "adaptation_scorer",
    "call_size",
    "ci95",
    "fine_tune",
    "joint_training",
    "make_optimizer",
    "markdown_table",
    "mean_ci",
    "plain_adapter",
    "summarize",
    "summarize_curves",
    "write_report",
]
