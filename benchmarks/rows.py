"""The published rows of the results store (the commands behind them) and their result files.

:data:`ROWS` names every row that README.md, docs/ and benchmarks/README.md publish; :func:`load` reads a row's
result file ``benchmarks/results/reproduction/NAME.json``. ``benchmarks/reproduce.py`` runs and records rows,
``benchmarks/tables.py`` writes the published tables from the files; both read this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "benchmarks" / "results" / "reproduction"
UNBACKED = STORE / "unbacked.json"
NOT_BACKED = "not backed by a result file yet"


@dataclass(frozen=True)
class Row:
    """One published result: a ``metajax`` command and where its numbers are shown."""

    name: str
    kind: str  # "sinusoid", "fewshot" or "finetune"
    config: str
    overrides: tuple[str, ...] = ()
    paper: str = ""
    source: str = ""  # for a "finetune" row: the row whose run directory it fine-tunes
    args: tuple[str, ...] = field(default=())  # extra command-line arguments (finetune)

    def command(self, run_dir: str, data_dir: str | None) -> list[str]:
        if self.kind == "finetune":
            cmd = ["metajax", "finetune", run_dir, *self.args]
        else:
            cmd = ["metajax", "train", "--config", self.config, "--run-dir", run_dir, "--no-progress"]
            for o in self.overrides:
                cmd += ["--set", o]
        if data_dir and self.kind != "sinusoid":
            cmd += ["--data-dir", data_dir]
        return cmd


def _fewshot(config: str, steps: int, paper: str) -> Row:
    return Row(config, "fewshot", config, (f"train.num_steps={steps}",), paper)


ROWS: dict[str, Row] = {
    r.name: r
    for r in [
        Row("sinusoid_maml", "sinusoid", "sinusoid_maml", paper="MAML 10-shot: visibly better than pretraining"),
        Row("sinusoid_fomaml", "sinusoid", "sinusoid_fomaml"),
        Row("sinusoid_reptile", "sinusoid", "sinusoid_reptile"),
        Row("sinusoid_meta_sgd", "sinusoid", "sinusoid_meta_sgd"),
        Row("sinusoid_anil", "sinusoid", "sinusoid_anil"),
        Row(
            "omniglot_5w1s_maml_quickstart",
            "fewshot",
            "omniglot_5w1s_maml",
            ("train.num_steps=200", "eval.num_tasks=100"),
            "98.7 ± 0.4 % (60k it.)",
        ),
        _fewshot("omniglot_5w1s_maml", 2000, "98.7 ± 0.4 % (60k it.)"),
        _fewshot("omniglot_5w1s_fomaml", 3000, "98.3 ± 0.5 % (60k it.)"),
        _fewshot("omniglot_5w1s_reptile", 2000, "97.68 ± 0.04 % (100k it., transductive)"),
        Row(
            "finetune_omniglot_5w1s_maml",
            "finetune",
            "omniglot_5w1s_maml",
            source="omniglot_5w1s_maml",
            args=("--joint-steps", "1000", "--num-tasks", "200"),
        ),
    ]
}


def load(name: str) -> dict | None:
    path = STORE / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None
