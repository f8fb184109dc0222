"""benchmarks/device_check.py on the CPU with small shapes: it passes a right implementation and fails a wrong one.

One program each (FOMAML, 8 filters, 4 tasks): the right run, and a run whose device side is deliberately wrong
(MAML's programs built as FOMAML: the second-order term dropped; and a 1 % error in one leaf) while the float64
reference is computed by the unchanged code in its own process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import device_check  # noqa: E402

COMMON = ["--quick", "--repeats", "1", "--reference-processes", "1"]


def _rows(out: Path) -> list[dict]:
    (path,) = out.glob("*-device.json")
    return json.loads(path.read_text())["rows"]


def test_a_right_implementation_passes_and_the_table_has_every_column(tmp_path):
    rc = device_check.main([*COMMON, "--only", "small fomaml", "--out", str(tmp_path)])
    assert rc == 0
    (row,) = _rows(tmp_path)
    assert row["ok"] and row["rel_err"] < 1e-4 and row["one_minus_cos"] < 1e-8
    assert row["s_per_step"] > 0 and row["compile_s"] > 0 and row["flops_per_step"] > 0
    md = next(tmp_path.glob("*-device.md")).read_text()
    assert "all passed" in md and "| omniglot-small fomaml k=1 conv=winograd vmap | 4 |" in md


def test_a_dropped_second_order_term_fails(tmp_path, monkeypatch):
    real_build = device_check.build

    def first_order_build(program, compute_dtype, chunk):
        wrong = device_check.Program(program.workload, "fomaml", program.k, program.conv, program.strategy)
        return real_build(wrong if program.algorithm == "maml" else program, compute_dtype, chunk)

    monkeypatch.setattr(device_check, "build", first_order_build)
    # the reference process runs the file itself, unpatched
    only = ["--only", "small maml k=1 conv=xla vmap", "--correctness-only"]
    rc = device_check.main([*COMMON, *only, "--out", str(tmp_path)])
    assert rc == 1
    (row,) = _rows(tmp_path)
    assert not row["ok"] and row["rel_err"] > row["tol_err"]
    assert "1 of 1 FAILED" in next(tmp_path.glob("*-device.md")).read_text()


def test_a_one_percent_error_in_one_leaf_fails():
    rng = pytest.importorskip("numpy").random.default_rng(0)
    ref = {"a": rng.normal(size=(3, 3)), "b": rng.normal(size=5)}
    got = {"a": ref["a"].copy(), "b": ref["b"] * 1.01}
    err, one_minus_cos = device_check.compare(got, ref)
    assert err > device_check.TOLERANCE["float32"][0]
    assert device_check.compare(ref, ref) == (0.0, pytest.approx(0.0, abs=1e-15))
    with pytest.raises(ValueError, match="different parameters"):
        device_check.compare({"a": ref["a"]}, ref)


def test_bad_arguments_are_named():
    with pytest.raises(SystemExit):
        device_check.parse_args(["--check-tasks", "0"])
    with pytest.raises(SystemExit, match="matches no program"):
        device_check.main(["--quick", "--only", "no such program"])
