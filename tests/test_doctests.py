"""The docstring examples run (in a subprocess: they assume JAX's default float32)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docstring_examples():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--doctest-modules",
            "-o",
            "addopts=",
            "-o",
            "testpaths=",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(ROOT / "metajax" / "_src"),
            str(ROOT / "metajax" / "__init__.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
