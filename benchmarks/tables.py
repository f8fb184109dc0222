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


# ------------------------------------------------------------------ numbers in prose, and the files they cite
#
# Outside the generated blocks a published page may print a result by hand, if it says where the number is:
#
#   96.47 %<!-- benchmarks/results/reproduction/omniglot_5w1s_maml.json: results.best.transductive.accuracy -->
#   0.084 ± 0.012<!-- benchmarks/results/reproduction/sinusoid_maml.json: results.maml.2 -->
#   1.82×<!-- benchmarks/results/l2l-20261203-010801.md: "| maml | 1 |" -->
#
# An inline citation (an HTML comment, invisible on the rendered page) covers the group of numbers just before
# it ("98.0 / 96.9 %", "1.6–1.8×", "a ± b"). Its keys, comma-separated, are dotted paths into a JSON file (list
# indices are integers; a key whose value is an object with "mean" or "accuracy" beside "ci95" gives those two
# numbers), one number each in order; a key of a Markdown or CSV file is a quoted piece of text that picks the
# file's first line containing it, and each number of the group must be on that line (no key: anywhere in the
# file). A paragraph (text between blank lines; a table is one paragraph) may instead name its files once:
#
#   <!-- numbers: benchmarks/results/20261123-180500-pool.md benchmarks/results/20261123-180500-pool.json -->
#
# and then each result-like number of the paragraph must be one those files hold. A paragraph whose results have
# no file says so in words: it contains NOT_BACKED (in any case). Numbers are compared at the precision printed: the
# file's value is formatted with as many decimals as the page prints, and multiplied by 100 first where the page prints
# a percentage (or points) of a value the file stores as a fraction.

_NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
NUMBER = re.compile(rf"(?<![\w.]){_NUM}(?![\w]|\.\d)|(?<![\w.]){_NUM}(?=x\b)")
_SEP = r"(?:\s*(?:–|-|/|±|and|vs|against)\s*)"
_UNIT = r"\s?(?:%|×|x\b|points?\b|s\b|ms\b|min\b)"
_GROUP = rf"{_NUM}(?:{_SEP}{_NUM})*"
CITE = re.compile(r"<!-- (?P<path>benchmarks/results/[^\s:]+?)(?:: (?P<keys>.*?))? -->")
SOURCES = re.compile(r"<!-- numbers: (?P<paths>[^>]*?) -->")
# Result-like numbers: a percentage, points or a ratio ("96.83 %", "+0.55 points", "1.6×", "1.6–1.8×"), every
# 'a ± b', and the number after "MSE" or "return(s)".
RESULT_LIKE = [
    re.compile(rf"(?<![\w.]){_GROUP}(?:\s?%|×(?!\s?\d)|x(?![\w])|\s?points?\b)"),
    re.compile(rf"(?<![\w.]){_NUM}\s*±\s*{_NUM}"),
    re.compile(rf"\b(?:MSE|[Rr]eturns?)(?:\s+of|\s+between)?\s+(?<![\w.]){_GROUP}"),
]
# Numbers with one of these after them are not results: the level of a confidence interval, a bound someone set.
NOT_RESULTS = re.compile(r"\s?% (?:CI|confidence|bootstrap)\b|\s?% of (?:the device|peak)\b")


def _value(text: str) -> str:
    return text.replace(",", "").replace("−", "-").lstrip("+")


def _formats(value: float, printed: str, percent: bool) -> bool:
    digits = len(printed.split(".")[1]) if "." in printed else 0
    scales = (1.0, 100.0) if percent else (1.0,)
    return any(f"{value * s:.{digits}f}" == printed for s in scales)


def _leaves(node: Any, out: list[float]) -> list[float]:
    if isinstance(node, bool):
        return out
    if isinstance(node, (int, float)):
        out.append(float(node))
    elif isinstance(node, dict):
        for v in node.values():
            _leaves(v, out)
    elif isinstance(node, list):
        for v in node:
            _leaves(v, out)
    return out


def _read(path: str) -> Any:
    p = ROOT / path
    if not p.is_file():
        raise FileNotFoundError(f"cited file {path} does not exist")
    return json.loads(p.read_text()) if p.suffix == ".json" else p.read_text()


def _lookup(data: Any, key: str) -> Any:
    node = data
    for part in key.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f"no key {key!r} (stopped at {part!r})")
    return node


def _in_text(text: str, printed: str) -> bool:
    token = re.escape(printed)
    return re.search(rf"(?<![\d.]){token}(?!\d)", text.replace("−", "-")) is not None


def _in_file(path: str, printed: str, percent: bool) -> bool:
    data = _read(path)
    if isinstance(data, str):
        return _in_text(data, printed) or ("," not in printed and _in_text(data.replace(",", ""), printed))
    return any(_formats(v, _value(printed), percent) for v in _leaves(data, []))


def check_citation(path: str, keys: str, numbers: list[str], percent: bool) -> str | None:
    """Why the numbers printed before an inline citation are not what the cited file holds (None: they are)."""
    try:
        data = _read(path)
    except FileNotFoundError as e:
        return str(e)
    if isinstance(data, str):
        selector = re.fullmatch(r'\s*"(.*)"\s*', keys)
        if keys.strip() and selector is None:
            return f"a key of a text file is quoted text, got {keys!r}"
        if selector:
            lines = [line for line in data.splitlines() if selector.group(1) in line]
            if not lines:
                return f"{path} has no line containing {selector.group(1)!r}"
            data = lines[0]
        bad = [n for n in numbers if not _in_text(data, n) and not _in_text(data.replace(",", ""), _value(n))]
        return (
            f"{path}: {', '.join(bad)} not found" + (f" on the line {data.strip()!r}" if selector else "")
            if bad
            else None
        )
    values: list[float] = []
    for key in (k.strip() for k in keys.split(",")):
        try:
            v = _lookup(data, key)
        except (KeyError, IndexError, ValueError) as e:
            return f"{path}: {e}"
        if isinstance(v, dict):
            mean = v.get("mean", v.get("accuracy"))
            if not isinstance(mean, (int, float)) or not isinstance(v.get("ci95"), (int, float)):
                return f"{path}: {key!r} is an object without a mean (or accuracy) and ci95"
            values += [float(mean), float(v["ci95"])]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            values.append(float(v))
        else:
            return f"{path}: {key!r} is {type(v).__name__}, not a number"
    if len(values) != len(numbers):
        return f"{len(numbers)} numbers printed ({' '.join(numbers)}) for {len(values)} values cited"
    bad = [f"{n} (file: {v!r})" for n, v in zip(numbers, values, strict=True) if not _formats(v, _value(n), percent)]
    return f"{path}: printed {', '.join(bad)}" if bad else None


def _blank(text: str, pattern: str) -> str:
    return re.sub(pattern, lambda m: " " * len(m.group(0)), text, flags=re.S)


def paragraphs(page: str, text: str | None = None) -> list[tuple[int, str]]:
    """The paragraphs of a page (or of ``text``, read as that page) outside its generated blocks: (first line, text)."""
    text = (ROOT / page).read_text() if text is None else text
    text = BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out, start, lines = [], 1, []
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            if not lines:
                start = n
            lines.append(line)
        elif lines:
            out.append((start, "\n".join(lines)))
            lines = []
    if lines:
        out.append((start, "\n".join(lines)))
    return out


def prose_numbers(page: str, text: str | None = None) -> list[dict[str, Any]]:
    """Every result-like number of a page's prose with what backs it.

    Each entry: ``line``, ``number``, ``context`` and ``status``: ``"cited"`` (an inline citation covers it),
    ``"source"`` (its paragraph names its files), ``"not backed"`` (its paragraph says so) or ``"unbacked"``; and
    ``problem``: why the cited or named file does not hold it (None when it does).
    """
    found = []
    for first, para in paragraphs(page, text):
        # prose only: code spans and link targets are not numbers a reader takes as results (nor citations)
        text = _blank(para, r"`[^`\n]*`")
        sources = [p for m in SOURCES.finditer(text) for p in m.group("paths").split()]
        text = _blank(text, r"\]\([^)\s]*\)")
        text = _blank(text, r"<!-- numbers: [^>]*? -->")
        covered: dict[int, tuple[str, str | None]] = {}  # start offset of a number -> (path, problem)
        last = 0
        for m in CITE.finditer(text):
            before = text[last : m.start()]
            group = re.search(rf"({_GROUP})(?:{_UNIT})?\s*$", before)
            if group is None:
                found.append(
                    dict(
                        line=first + text[: m.start()].count("\n"),
                        number="",
                        context=para[m.start() : m.end()],
                        status="cited",
                        problem="a citation with no number just before it",
                    )
                )
                last = m.end()
                continue
            starts = [last + group.start(1) + n.start() for n in NUMBER.finditer(group.group(1))]
            numbers = [n.group(0) for n in NUMBER.finditer(group.group(1))]
            percent = re.search(r"%|points?", before[group.start() :]) is not None
            problem = check_citation(m.group("path"), m.group("keys") or "", numbers, percent)
            for s in starts:
                covered[s] = (m.group("path"), problem)
            last = m.end()
        text = _blank(text, r"<!--.*?-->")
        seen: set[int] = set()
        for pattern in RESULT_LIKE:
            for g in pattern.finditer(text):
                if NOT_RESULTS.match(
                    text, g.end() - (1 if g.group(0).endswith("%") else 0) - (1 if g.group(0).endswith(" %") else 0)
                ):
                    continue
                for n in NUMBER.finditer(text, g.start(), g.end()):
                    if n.start() in seen:
                        continue
                    seen.add(n.start())
                    line = first + text[: n.start()].count("\n")
                    context = para.split("\n")[line - first].strip()[:120]
                    entry = dict(line=line, number=n.group(0), context=context, problem=None)
                    if n.start() in covered:
                        entry.update(status="cited", problem=covered[n.start()][1])
                    elif sources:
                        percent = re.match(r"[\d.,/–\s-]*(?:%|points?)", text[n.start() : g.end() + 1]) is not None
                        held = [p for p in sources if _in_file(p, n.group(0), percent)]
                        entry.update(status="source", problem=None if held else f"not in {' '.join(sources)}")
                    elif NOT_BACKED in " ".join(para.split()).lower():
                        entry.update(status="not backed")
                    else:
                        entry.update(status="unbacked")
                    found.append(entry)
        for start, (_path, problem) in covered.items():  # cited numbers that are not result-like are compared too
            if start not in seen:
                line = first + text[:start].count("\n")
                number = NUMBER.match(text, start)
                context = para.split("\n")[line - first].strip()[:120]
                found.append(
                    dict(
                        line=line,
                        number=number.group(0) if number else "",
                        context=context,
                        status="cited",
                        problem=problem,
                    )
                )
    return sorted(found, key=lambda e: e["line"])


PUBLISHED = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")), "benchmarks/README.md")
