"""The published tables, generated from the results store (``benchmarks/results/reproduction/*.json``).

Each generated table sits in a Markdown file between ``<!-- generated: KEY -->`` and ``<!-- end generated -->``;
:func:`update_tables` rewrites those blocks (``python benchmarks/reproduce.py tables``) and, with
``check=True``, only reports which files would change (the test suite runs that check).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rows import NOT_BACKED, ROOT, ROWS, UNBACKED, load

BLOCK = re.compile(r"(<!-- generated: (?P<key>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
SINUSOID_STEPS = (0, 1, 10, 32)


def _link(name: str, page: str) -> str:
    """A row's result file: a Markdown link from a GitHub page, a path on a docs-site page (not a document)."""
    path = f"benchmarks/results/reproduction/{name}.json"
    if page.startswith("docs/"):
        return f"`{path}`"
    return f"[{name}.json]({'../' * page.count('/')}{path})"


def _mse(r: dict[str, Any], median: bool = False) -> str:
    """``mean ± ci`` of one adaptation-curve point, with the diverged count when there is one."""
    mean, ci = r["mean"], r["ci95"]
    digits = 2 if mean >= 10 else 3
    s = f"{mean:.{digits}f} ± {ci:.{digits}f}"
    if median:
        s += f" ({r['median']:.{digits if r['median'] < 10 else 2}f})"
    if r.get("diverged"):
        s += f", {r['diverged']} diverged"
    return s


def _at(curve: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    return next(r for r in curve if r["steps"] == steps)


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _machine(e: dict[str, Any]) -> str:
    load = e["machine"].get("loadavg_1_5_15_at_start")
    shared = f", load {load[0]:.1f} at start" if load else ""
    m, jax_version = e["machine"], e["versions"]["jax"]
    return f"{m['cpu']}, {m['cores']} cores{shared}; jax {jax_version}; {e['date']}, commit {e['commit'][:7]}"


def default_job(page: str) -> str:
    e = load("sinusoid_maml")
    if e is None:
        return f"The default job's table is {NOT_BACKED}.\n"
    res, t = e["results"], e["train"]
    names = list(res)
    head = (
        "| inner steps | "
        + " | ".join(
            {"random": "random init", "pretrained": "pretrained init"}.get(n, n.upper() if n == "maml" else n)
            for n in names
        )
        + " |"
    )
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for k in SINUSOID_STEPS:
        lines.append(f"| {k} | " + " | ".join(_mse(_at(res[n], k), median=True) for n in names) + " |")
    return (
        f"Measured with `metajax train` ({_machine(e)}; {_link('sinusoid_maml', page)}): compiling the step "
        f"{t['first_call_s']:.0f} s, {t['steps']:,} meta-iterations {t['train_wall_s']:.0f} s, evaluation "
        f"{t['eval_wall_s']:.0f} s, {_wall(e['wall_s'])} end to end. Query MSE on "
        f"{_at(res[names[0]], 0)['num_tasks']} held-out tasks, mean ± 95 % CI over the tasks that did not "
        "diverge, median in brackets; diverged = non-finite or MSE > 100:\n\n" + "\n".join(lines) + "\n"
    )


def sinusoid_algorithms(page: str) -> str:
    lines = [
        "| config | after 1 step | after 10 steps | after 32 steps | training time | result file |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("sinusoid_maml", "sinusoid_fomaml", "sinusoid_reptile", "sinusoid_meta_sgd", "sinusoid_anil"):
        e = load(name)
        if e is None:
            lines.append(f"| `{name}` | | | | | {NOT_BACKED} |")
            continue
        curve = e["results"][e["train"]["algorithm"]]
        cells = " | ".join(_mse(_at(curve, k)) for k in (1, 10, 32))
        lines.append(f"| `{name}` | {cells} | {_wall(e['train']['train_wall_s'])} | {_link(name, page)} |")
    return "\n".join(lines) + "\n"


def _accuracy(e: dict[str, Any], policy: str) -> str:
    res = e["results"]
    res = res.get("best", res.get("final", res))
    r = res[policy]
    return f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} %"


def _fewshot_budget(e: dict[str, Any]) -> str:
    t, cfg = e["train"], e["resolved_config"]
    s = f"{t['steps']:,} meta-steps"
    if t.get("best_step") is not None:
        s += f", best validation at {t['best_step']:,}"
    s += f"; {cfg['eval']['num_tasks']} test tasks, {cfg['eval']['steps']} inner steps at test time"
    return s


def reproduction(page: str) -> str:
    unbacked = json.loads(UNBACKED.read_text()) if UNBACKED.is_file() else {}
    lines = [
        "| config | paper | measured (transductive BN) | measured (non-transductive BN) | budget used | wall "
        "| result file |",
        "|---|---|---|---|---|---|---|",
    ]
    names = [n for n, r in ROWS.items() if r.kind == "fewshot" and not n.endswith("_quickstart")]
    names += [n for n in unbacked if n not in names]
    for name in names:
        e = load(name)
        if e is not None:
            row = ROWS[name]
            lines.append(
                f"| `{row.config}` | {row.paper} | **{_accuracy(e, 'transductive')}** | {_accuracy(e, 'support')} | "
                f"{_fewshot_budget(e)} | {_wall(e['train']['train_wall_s'])} training + "
                f"{_wall(e['train']['eval_wall_s'])} evaluation ({_machine(e)}) | {_link(name, page)} |"
            )
        else:
            u = unbacked[name]
            lines.append(
                f"| `{u['config']}` | {u['paper']} | {u['transductive']} | {u['non_transductive']} | {u['budget']} | "
                f"{u['wall']} | {NOT_BACKED} |"
            )
    return "\n".join(lines) + "\n"


def finetune(page: str) -> str:
    name = "finetune_omniglot_5w1s_maml"
    e = load(name)
    if e is None:
        return f"The fine-tuning table is {NOT_BACKED}.\n"
    acc = e["results"]["accuracy"]
    cols = list(acc)
    steps = [r["steps"] for r in acc[cols[0]]]
    lines = ["| fine-tuning steps | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for k in steps:
        cells = [_at(acc[c], k) for c in cols]
        best = max(c["mean"] for c in cells)
        lines.append(
            f"| {k} | "
            + " | ".join(
                (
                    f"**{100 * c['mean']:.1f} ± {100 * c['ci95']:.1f} %**"
                    if c["mean"] == best and k
                    else f"{100 * c['mean']:.1f} ± {100 * c['ci95']:.1f} %"
                )
                for c in cells
            )
            + " |"
        )
    return (
        f"Measured ({_machine(e)}; {_wall(e['wall_s'])}; {_link(name, page)}), query accuracy, mean ± 95 % CI:\n\n"
        + "\n".join(lines)
        + "\n"
    )


def quickstart(page: str) -> str:
    e = load("omniglot_5w1s_maml_quickstart")
    if e is None:
        return f"The quick-start run's accuracy is {NOT_BACKED}.\n"
    return (
        f"The 200-step run above reaches {_accuracy(e, 'transductive')} 5-way 1-shot test accuracy "
        f"({e['resolved_config']['eval']['num_tasks']} tasks) in {_wall(e['wall_s'])} on "
        f"{e['machine']['cores']} CPU cores ({_link('omniglot_5w1s_maml_quickstart', page)}).\n"
    )


GENERATORS: dict[str, Callable[[int], str]] = {
    "default-job": default_job,
    "sinusoid-algorithms": sinusoid_algorithms,
    "reproduction": reproduction,
    "finetune": finetune,
    "quickstart": quickstart,
}
PAGES = ("README.md", "docs/getting-started.md", "docs/reproducing.md", "benchmarks/README.md")


def render(text: str, page: str) -> str:
    def sub(m: re.Match) -> str:
        key = m.group("key")
        if key not in GENERATORS:
            raise KeyError(f"unknown generated block {key!r}; known: {', '.join(GENERATORS)}")
        return m.group(1) + GENERATORS[key](page) + m.group(4)

    return BLOCK.sub(sub, text)


def update_tables(check: bool = False) -> list[str]:
    """Rewrite every generated block; return the pages that changed (``check``: that would change)."""
    changed = []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text()
        new = render(text, page)
        if new != text:
            changed.append(page)
            if not check:
                path.write_text(new)
    return changed + update_configs(check)


# ------------------------------------------------------------------------- the "Measured:" line of each config


MEASURED = re.compile(r"^Measured: .*?(?=\n\n|\n\"\"\"|\n[A-Z][a-z]+: )", re.M | re.S)


def measured_line(config: str) -> str:
    """The ``Measured:`` sentence of a config's docstring, from the row that runs the config unchanged."""
    import textwrap

    rows = [r for r in ROWS.values() if r.config == config and r.kind != "finetune" and r.name == config]
    e = load(rows[0].name) if rows else None
    path = f"benchmarks/results/reproduction/{config}.json"
    if e is None:
        unbacked = json.loads(UNBACKED.read_text()) if UNBACKED.is_file() else {}
        text = "Measured: no result file yet" + (
            " (an earlier run is in the reproduction table of benchmarks/README.md)." if config in unbacked else "."
        )
    elif e["kind"] == "sinusoid":
        curve = e["results"][e["train"]["algorithm"]]
        text = (
            f"Measured: query MSE {_mse(_at(curve, 1))} / {_mse(_at(curve, 10))} after 1 / 10 inner steps on "
            f"{_at(curve, 1)['num_tasks']} held-out tasks ({e['date']}; {path})."
        )
    else:
        text = (
            f"Measured: {_accuracy(e, 'transductive')} (transductive BN) / {_accuracy(e, 'support')} "
            f"(non-transductive) on {e['resolved_config']['eval']['num_tasks']} test tasks after "
            f"{e['train']['steps']:,} meta-steps, a shortened budget ({e['date']}; {path})."
        )
    return textwrap.fill(text.replace("±", "+-"), 110, break_on_hyphens=False, break_long_words=False)


def config_paths() -> list[Path]:
    """The config modules under ``configs/`` (each defines ``get_config``); shared-settings modules are not configs."""
    return [
        path
        for path in sorted((ROOT / "configs").glob("*_*.py"))
        if not path.name.startswith("__") and "def get_config" in path.read_text()
    ]


def update_configs(check: bool = False) -> list[str]:
    """Rewrite the ``Measured:`` line of every config docstring; return the configs that changed."""
    changed = []
    for path in config_paths():
        text = path.read_text()
        if not MEASURED.search(text):
            raise ValueError(f"{path}: its docstring has no 'Measured:' line")
        new = MEASURED.sub(lambda m, name=path.stem: measured_line(name), text, count=1)
        if new != text:
            changed.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(new)
    return changed
