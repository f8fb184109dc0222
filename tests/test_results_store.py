"""Every published accuracy and MSE has a committed result file, and the published tables are generated from them.

The results store is ``benchmarks/results/reproduction/`` (written by ``benchmarks/reproduce.py``); the other
benchmark results are the files beside it in ``benchmarks/results/``.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLAIM = re.compile(r"(?<![\d.])(-?\d+\.\d+) ± (\d+\.\d+)(?![\d.])")  # returns are negative


@pytest.fixture(scope="module")
def tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("tables")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _pairs(node, out):
    """Every (mean, ci95) pair in a JSON tree (``mean``/``accuracy`` beside ``ci95``)."""
    if isinstance(node, dict):
        for key in ("mean", "accuracy"):
            if isinstance(node.get(key), (int, float)) and isinstance(node.get("ci95"), (int, float)):
                out.append((float(node[key]), float(node["ci95"])))
        for v in node.values():
            _pairs(v, out)
    elif isinstance(node, list):
        for v in node:
            _pairs(v, out)
    return out


def _matches(claim: tuple[str, str], pairs, texts) -> bool:
    mean, ci = claim
    if any(f"{mean} ± {ci}" in t for t in texts):
        return True
    dm, dc = len(mean.split(".")[1]), len(ci.split(".")[1])
    for m, c in pairs:
        for scale in (1.0, 100.0):
            if f"{m * scale:.{dm}f}" == mean and f"{c * scale:.{dc}f}" == ci:
                return True
    return False


def test_generated_tables_are_up_to_date(tables):
    """The tables in README.md, docs/ and benchmarks/README.md are exactly what the result files give."""
    stale = tables.update_tables(check=True)
    assert not stale, f"out of date (run: python benchmarks/reproduce.py tables): {stale}"


def test_every_block_is_known_and_closed(tables):
    for page in PAGES:
        text = page.read_text()
        opened = text.count("<!-- generated: ")
        assert opened == text.count("<!-- end generated -->"), f"{page}: unclosed generated block"
        for key in re.findall(r"<!-- generated: ([\w-]+) -->", text):
            assert key in tables.GENERATORS, f"{page}: unknown generated block {key!r}"


def test_result_files_are_complete_and_small(tables):
    store = RESULTS / "reproduction"
    names = [p.stem for p in store.glob("*.json") if p.name != "unbacked.json"]
    for name in names:
        path = store / f"{name}.json"
        assert name in tables.ROWS, f"{path}: no row of benchmarks/rows.py is called {name!r}"
        e = json.loads(path.read_text())
        for key in (
            "command",
            "commit",
            "clean",
            "machine",
            "versions",
            "date",
            "wall_s",
            "results",
            "resolved_config",
        ):
            assert key in e, f"{path}: missing {key!r}"
        assert re.fullmatch(r"[0-9a-f]{40}", e["commit"]), f"{path}: commit {e['commit']!r}"
        assert e["clean"], f"{path}: produced by a checkout with uncommitted changes to metajax/ or configs/"
        assert path.stat().st_size < 64_000, f"{path}: {path.stat().st_size} bytes; the store holds results, not data"
    # every few-shot row either has a file or is carried, marked, from the earlier table
    unbacked = json.loads((store / "unbacked.json").read_text())
    for name, row in tables.ROWS.items():
        if row.kind == "fewshot" and not name.endswith("_quickstart"):
            assert name in names or name in unbacked, f"row {name!r} has neither a result file nor an earlier entry"


def _pairs_and_texts(paths):
    pairs, texts = [], []
    for rel in paths:
        path = ROOT / rel
        if path.suffix == ".json":
            _pairs(json.loads(path.read_text()), pairs)
        else:
            texts.append(path.read_text())
    return pairs, texts


def test_every_published_mean_and_ci_has_a_result_file(tables):
    """Outside the generated blocks, each 'a ± b' number on a published page is one that the file it cites holds:
    the file and key of its inline citation (compared there, tests/test_published_numbers.py), or one of the files
    its paragraph names, as a pair (a mean beside its ci95, or the printed 'a ± b' text). A pair no file is cited
    for fails, and so does one that only another file holds."""
    missing = []
    for page in tables.PUBLISHED:
        cited = {(e["line"], e["number"]) for e in tables.prose_numbers(page) if e["status"] == "cited"}
        for first, para in tables.paragraphs(page):
            sources = [
                p for m in tables.SOURCES.finditer(re.sub(r"`[^`\n]*`", "", para)) for p in m.group("paths").split()
            ]
            pairs, texts = _pairs_and_texts(sources)
            prose = re.sub(r"`[^`\n]*`", "", para)
            for n, line in enumerate(prose.split("\n"), first):
                for claim in CLAIM.findall(line):
                    if (n, claim[0]) in cited and (n, claim[1]) in cited:
                        continue
                    if not sources or not _matches(claim, pairs, texts):
                        where = " ".join(sources) or "no file cited"
                        missing.append(f"{page}:{n}: '{claim[0]} ± {claim[1]}' ({where}) in: {line.strip()[:100]}")
    assert not missing, "numbers not held by the file they cite:\n" + "\n".join(missing)


def test_unbacked_rows_say_so(tables):
    text = tables.reproduction("benchmarks/README.md")
    unbacked = json.loads((RESULTS / "reproduction" / "unbacked.json").read_text())
    for name in unbacked:
        if tables.load(name) is None:
            line = next(line for line in text.splitlines() if f"`{name}" in line)
            assert line.rstrip().endswith(f"{tables.NOT_BACKED} |"), line


def _configs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return [p.stem for p in importlib.import_module("tables").config_paths()]
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.parametrize("name", _configs())
def test_every_config_states_source_paper_and_measured(name, tables):
    """Each config's docstring names its source, the paper's number (or that there is none) and what we measured:
    the 'Measured:' line is generated from the results store, so it cannot drift from the result files."""
    doc = importlib.import_module(f"metajax.configs.{name}").__doc__
    for field in ("Source:", "Paper:", "Measured:", f"--config {name}"):
        assert field in doc, f"configs/{name}.py: its docstring has no {field!r}"
    assert tables.measured_line(name) in doc


# openai/supervised-reptile README, the commands for the paper (current version): (ways, shots) ->
# (train-shots, inner-batch, inner-iters, learning-rate, meta-step, meta-batch, meta-iters, eval-batch, eval-iters)
REPTILE_README = {
    (5, 1): (10, 10, 5, 0.001, 1.0, 5, 100_000, 5, 50),
    (5, 5): (10, 10, 5, 0.001, 1.0, 5, 100_000, 5, 50),
    (20, 1): (10, 20, 10, 0.0005, 1.0, 5, 200_000, 10, 50),
    (20, 5): (10, 20, 10, 0.0005, 1.0, 5, 200_000, 10, 50),
}


@pytest.mark.parametrize("ways,shots", sorted(REPTILE_README))
def test_reptile_configs_follow_the_current_reference_commands(ways, shots):
    from metajax.experiment import load_config

    c = load_config(f"omniglot_{ways}w{shots}s_reptile")
    got = (
        c.data.shots,
        c.inner.batch_size,
        c.inner.steps,
        c.inner.lr,
        c.outer.lr,
        c.data.meta_batch_size,
        c.train.num_steps,
        c.eval.inner_batch_size,
        c.eval.steps,
    )
    assert got == REPTILE_README[(ways, shots)]
    assert (c.inner.opt, c.inner.b1, c.outer.opt, c.outer.anneal) == ("adam", 0.0, "sgd", True)
    assert (c.eval.ways, c.eval.shots) == (ways, shots)


def test_imaml_config_follows_the_replication_command():
    """aravindr93/imaml_dev examples/README.md: --inner_lr 1e-1 --n_steps 16 --task_mb_size 32 --lam 2.0
    --cg_steps 5 for training; --n_steps 16 --lam 0.0 --inner_lr 1e-1 for the test accuracy."""
    from metajax.experiment import load_config

    c = load_config("omniglot_5w1s_imaml")
    assert (c.inner.lr, c.inner.steps, c.data.meta_batch_size, c.inner.lam, c.inner.cg_steps) == (0.1, 16, 32, 2.0, 5)
    assert (c.eval.steps, c.eval.lam, c.outer.lr) == (16, 0.0, 1e-3)
