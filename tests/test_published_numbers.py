"""Every result a published page prints by hand is tied to the result file that holds it.

The published pages are README.md, docs/*.md and benchmarks/README.md. Their tables of results are generated
from the results store (``<!-- generated: KEY -->`` blocks, tests/test_results_store.py); this module checks the
numbers written in prose and hand-made tables outside those blocks.

A result-like number is a percentage or points ("96.47 %", "+0.55 points"), a ratio ("1.82×", "1.6–1.8x"),
either number of an "a ± b", or the number right after "MSE" or "return(s)". Each one must be

* cited inline, by an HTML comment right after the number (or group of numbers) that names a result file and key:
  ``96.47 %<!-- benchmarks/results/reproduction/omniglot_5w1s_maml.json: results.best.transductive.accuracy -->``.
  Keys are dotted paths into a JSON file, comma-separated, one per number (``98.0 / 96.9 %<!-- FILE: a.b, a.c
  -->``); a key whose value is an object with ``mean`` (or ``accuracy``) and ``ci95`` gives both numbers of an
  "a ± b". In a Markdown or CSV file the key is quoted text that picks the first line holding it
  (``1.82×<!-- benchmarks/results/l2l-20261203-010801.md: "| maml | 1 |" -->``); or
* in a paragraph (text between blank lines; a table is one paragraph) that names its files,
  ``<!-- numbers: benchmarks/results/A.md benchmarks/results/A.json -->``, and held by one of them; or
* in a paragraph that says, in words, that it is "not backed by a result file yet" (``tables.NOT_BACKED``).

Numbers that are not results are not matched: counts, steps, sizes, dates, versions and times carry none of the
marks above, and the level of a confidence interval ("95 % CI", "95 % confidence", "95 % bootstrap") is skipped.
A file's value is compared at the precision printed (formatted with the printed number of decimals), multiplied
by 100 first where the page prints a percentage or points of a fraction. The parser is ``benchmarks/tables.py``
(``prose_numbers``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("tables")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _pages():
    return ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")), "benchmarks/README.md"]


def test_the_pages_checked_are_the_published_ones(tables):
    assert sorted(tables.PUBLISHED) == sorted(_pages())


@pytest.mark.parametrize("page", _pages())
def test_cited_numbers_are_the_files_numbers(page, tables):
    """Each inline citation resolves, and its file holds each number it covers, to the printed precision; each
    number of a paragraph that names its files is one those files hold."""
    bad = [
        f"{page}:{e['line']}: {e['number']} ({e['problem']}) in: {e['context']}"
        for e in tables.prose_numbers(page)
        if e["problem"]
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", _pages())
def test_every_result_number_is_cited_or_marked(page, tables):
    bad = [
        f"{page}:{e['line']}: {e['number']} in: {e['context']}"
        for e in tables.prose_numbers(page)
        if e["status"] == "unbacked"
    ]
    assert not bad, "result-like numbers with no result file and no 'not backed' mark:\n" + "\n".join(bad)


def test_an_edited_number_fails(tables):
    """The check itself: a cited number, a number of a paragraph with named files and a plain percentage, each
    changed by one digit, are caught."""
    cite = "<!-- benchmarks/results/reproduction/omniglot_5w1s_maml.json: results.best.transductive.accuracy -->"
    e = tables.load("omniglot_5w1s_maml")["results"]["best"]["transductive"]["accuracy"]
    right = f"{100 * e:.2f}"
    wrong = f"{100 * e + 0.01:.2f}"
    assert not [x for x in tables.prose_numbers("x.md", f"MAML {right} %{cite}.\n") if x["problem"]]
    assert [x for x in tables.prose_numbers("x.md", f"MAML {wrong} %{cite}.\n") if x["problem"]]
    named = "<!-- numbers: benchmarks/results/reptile_ablation.md -->"
    assert not [x for x in tables.prose_numbers("x.md", f"Reptile 98.04 %.{named}\n") if x["problem"]]
    assert [x for x in tables.prose_numbers("x.md", f"Reptile 98.14 %.{named}\n") if x["problem"]]
    plain = tables.prose_numbers("x.md", "MAML reaches 95.11 % here.\n")
    assert [x["status"] for x in plain] == ["unbacked"]
    assert [x["status"] for x in tables.prose_numbers("x.md", "95 % CI, 600 tasks, 70,000 steps, jax 0.10.2.\n")] == []
