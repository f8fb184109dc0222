"""Every result file in benchmarks/results/ says where it came from (benchmarks/provenance.py's schema), or is listed
there as incomplete with, per unknown field, the reason; no result file records an absolute local path."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def prov():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("provenance")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_every_result_file_validates_or_is_listed_incomplete(prov):
    valid, incomplete, problems = prov.validate_all()
    assert not problems, "\n".join(problems)
    assert len(valid) + len(incomplete) + len(prov.NOT_RESULTS) == len(prov.units())


def test_every_output_is_described(prov):
    """Each .md/.csv/.png output has a JSON file of its stem (or a stem it extends) beside it, or a sidecar."""
    found = prov.units()
    for path in RESULTS.rglob("*"):
        if path.suffix in (".md", ".csv", ".png") and not any(
            (RESULTS / name).is_dir() and RESULTS / name in path.parents for name in found
        ):
            stems = [Path(n).stem for n in found if (RESULTS / n).parent == path.parent]
            assert any(path.stem.startswith(s) for s in stems), f"{path}: no result file describes it"


def test_no_absolute_local_paths(prov):
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix == ".json":
            found = prov.absolute_paths(json.loads(path.read_text()))
        elif path.suffix in (".md", ".csv"):
            found = prov.absolute_paths(path.read_text())
        else:
            continue
        assert not found, f"{path}: records local paths {found}"


def test_incomplete_fields_are_schema_fields_with_reasons(prov):
    for name, fields in prov.INCOMPLETE.items():
        assert fields, f"{name}: listed with no unknown field"
        for field, why in fields.items():
            assert field in prov.FIELDS and why.strip(), (name, field)


def test_the_validator_rejects(prov):
    """A complete provenance validates; dropping, corrupting or path-leaking a field does not."""
    good = {
        "schema": prov.SCHEMA,
        "commit": "0" * 40,
        "clean": True,
        "command": "python benchmarks/federated.py",
        "config": {"steps": 1},
        "wall_s": 1.0,
        "versions": {k: "1.0" for k in prov.VERSIONS},
        "machine": {
            "cpu": "x",
            "cpu_flags": {"avx2": True},
            "cores": 2,
            "os": "Linux",
            "backend": "cpu",
            "device_kind": "cpu",
        },
        "xla": {"XLA_FLAGS": "", "jax_config": {"jax_enable_x64": False}},
    }
    assert prov.validate("x.json", good, {}) == []
    assert prov.validate("x.json", None, {})
    assert prov.validate("x.json", {**good, "commit": "abc"}, {})
    assert prov.validate("x.json", {**good, "machine": {**good["machine"], "cpu_flags": None}}, {})
    assert prov.validate("x.json", {**good, "command": "python /home/me/metajax/benchmarks/federated.py"}, {})
    # listed as unknown: null passes, a recorded value must be unlisted, a reason is required
    unknown = {**good, "wall_s": None}
    assert prov.validate("x.json", unknown, {}) != []
    assert prov.validate("x.json", unknown, {"x.json": {"wall_s": "not timed"}}) == []
    assert prov.validate("x.json", good, {"x.json": {"wall_s": "not timed"}}) != []
    assert prov.validate("x.json", unknown, {"x.json": {"wall_s": " "}}) != []


def test_portable_paths(prov, tmp_path):
    assert prov.portable_path(ROOT / "benchmarks" / "results") == "benchmarks/results"
    assert prov.portable_path(tmp_path / "omniglot" / "tfds", data_dir=tmp_path) == "$DATA_DIR/omniglot/tfds"
    assert prov.portable_path(tmp_path, data_dir=tmp_path) == "$DATA_DIR"
    assert prov.portable_path("/nowhere/runs/a") == "$LOCAL/a"
    assert prov.portable(["--out", "/nowhere/x", "s/it", "https://github.com/a/b"]) == [
        "--out",
        "$LOCAL/x",
        "s/it",
        "https://github.com/a/b",
    ]
