"""What users read: the README's example runs as written, and no page sends them into private modules."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Files users read: the README, the docs pages, the benchmark scripts and their README, the configs.
USER_FACING = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "docs" / "conf.py",
    *sorted((ROOT / "benchmarks").glob("*.py")),
    ROOT / "benchmarks" / "README.md",
    *sorted((ROOT / "configs").glob("*.py")),
]
# benchmarks/harness.py runs the worker of checkouts from before the harness left the package, by its old
# module name: the one mention of the private package a user may see, and it names no public API.
OLD_CHECKOUT_WORKER = '"-m", "metajax._src.bench", "--worker"'


def test_user_facing_files_name_no_private_module():
    found = []
    for path in USER_FACING:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"metajax[./]_src", line) and OLD_CHECKOUT_WORKER not in line:
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_code_and_pages_cite_papers_not_internal_notes():
    """No references to our internal design notes or shared folder in anything installed or read."""
    pattern = re.compile(r"seed 0{2}\d|MISSION[.]md|[.][.]/shared")
    files = USER_FACING + sorted((ROOT / "metajax").rglob("*.py"))
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found


def test_readme_is_a_short_guide():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    for diary in ("today", "the day before", "we aim", "fixed on 20"):
        assert diary not in text.lower(), diary


def test_readme_library_example_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(block)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(m) for m in re.findall(r"query MSE after one inner step: ([0-9.]+)", proc.stdout)]
    assert len(losses) >= 4, proc.stdout
    assert losses[-1] < 0.5 * losses[0], losses  # it prints the loss as it falls


def test_public_modules_import_and_say_what_they_are_for():
    code = (
        "import metajax, metajax.models, metajax.data, metajax.evaluation, metajax.parallel, "
        "metajax.diagnostics, metajax.experiment, metajax.cli\n"
        "for m in (metajax, metajax.models, metajax.data, metajax.evaluation, metajax.parallel, "
        "metajax.diagnostics, metajax.experiment):\n"
        "    assert m.__doc__ and len(m.__doc__) > 200, m.__name__\n"
        "    missing = [n for n in m.__all__ if not hasattr(m, n)]\n"
        "    assert not missing, (m.__name__, missing)\n"
        "print(metajax.__version__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    version = re.search(r'^version = \{ attr = "([^"]+)" \}', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None  # the version is written once, in metajax/_src/version.py
    assert proc.stdout.strip() == re.search(
        r'__version__ = "(.+)"', (ROOT / "metajax/_src/version.py").read_text()
    ).group(1)
