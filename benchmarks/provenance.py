"""Where a result file came from: one schema, one writer and one validator for every file in benchmarks/results/.

Every JSON result file carries a ``"provenance"`` object (a file whose top level is a list, and a run directory,
carries it in a sidecar: ``NAME.provenance.json`` beside ``NAME.json``, ``provenance.json`` inside the directory).
A ``.md``, ``.csv`` or ``.png`` output is described by the JSON file of the same stem beside it. The object:

``schema``
    ``"metajax-result-provenance/1"``.
``commit``, ``clean``
    The commit of the metajax that ran (40 hex digits) and whether the checkout had no uncommitted changes to
    tracked files under ``metajax/``, ``configs/`` or ``benchmarks/*.py``.
``command``
    The command line that wrote the file, ``python benchmarks/SCRIPT.py ARGS`` (local paths made portable, below).
``config``
    What the command resolved to: the script's parsed arguments, or a results-store row's config name and
    overrides (its resolved config is the file's ``resolved_config``).
``wall_s``
    Wall time of the command that wrote the file, in seconds.
``versions``
    ``python``, ``jax``, ``jaxlib``, ``flax``, ``optax``, ``numpy``.
``machine``
    ``cpu`` (model name), ``cpu_flags`` (``{flag: present}`` for the SIMD extensions XLA:CPU code-generates for:
    SSE4.2, AVX, AVX2, FMA, AVX-512 F/BW/VL/VNNI/BF16, AMX on x86; ASIMD, SVE on Arm), ``cores`` (usable by the
    process), ``os``, ``backend`` (jax's default backend) and ``device_kind`` (of its first device).
``xla``
    ``XLA_FLAGS`` (the environment variable in force, ``""`` when unset) and ``jax_config`` (the jax
    configuration that changes numerics or placement: x64, default matmul precision, platforms, PRNG).

Optional: ``date`` (UTC), ``added_in_commit`` (for a file whose provenance was completed afterwards: the commit
that added the file to the repository, which is when it was committed, not necessarily the code that produced it),
``note``, and extra detail under ``machine`` (``arch``, ``cpu_count``, ``device_count``, ``loadavg_1_5_15``) and
``xla`` (``env``: other ``XLA_*``/``JAX_*`` variables).

A file validates when every field above is known and well formed, or when the file is listed in
:data:`INCOMPLETE` with, per field left ``null``, why it is not known. No recorded string holds an absolute local
path: paths inside the repository are recorded relative to it, a data directory as ``$DATA_DIR`` (what
``--data-dir`` or ``$METAJAX_DATA_DIR`` named), a home directory as ``~`` and any other local path as
``$LOCAL/<last component>``.

    python benchmarks/provenance.py            # validate every result file; list the incomplete ones
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA = "metajax-result-provenance/1"
KEY = "provenance"
SIDECAR = ".provenance.json"  # NAME.provenance.json beside a NAME.json whose top level is a list
RUN_DIR_SIDECAR = "provenance.json"  # inside a copied run directory

VERSIONS = ("python", "jax", "jaxlib", "flax", "optax", "numpy")
MACHINE = ("cpu", "cpu_flags", "cores", "os", "backend", "device_kind")
XLA = ("XLA_FLAGS", "jax_config")
# every field a valid file has, by its dotted name (what INCOMPLETE names)
FIELDS = (
    "commit",
    "clean",
    "command",
    "config",
    "wall_s",
    *(f"versions.{k}" for k in VERSIONS),
    *(f"machine.{k}" for k in MACHINE),
    *(f"xla.{k}" for k in XLA),
)
CPU_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "asimd",
    "sve",
)
JAX_CONFIG = ("jax_enable_x64", "jax_default_matmul_precision", "jax_platforms", "jax_default_prng_impl")
CLEAN_PATHS = ("metajax", "configs", "benchmarks/*.py")
_T0 = time.time()

# ------------------------------------------------------------------------------------------------- portable paths

# an absolute path at the start of a token (not "s/it", not the "//" of a URL)
_ABSOLUTE = re.compile(r"(?<![\w.~$/:])/[^\s'\"(),;=]+")


def _data_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = [data_dir, os.environ.get("METAJAX_DATA_DIR"), Path.home() / "tensorflow_datasets"]
    return [Path(d).expanduser().resolve() for d in dirs if d]


def portable_path(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str:
    """An absolute local path as the recorded form: relative to the repository, ``$DATA_DIR/…``, ``~/…``, or
    ``$LOCAL/<last component>``; a relative path is returned as it is."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return str(path)
    p = Path(os.path.normpath(p))
    resolved = p.resolve()
    for base, name in [(ROOT, None), *((d, "$DATA_DIR") for d in _data_dirs(data_dir)), (Path.home(), "~")]:
        for q in (p, resolved):
            if q == base or base in q.parents:
                rel = q.relative_to(base).as_posix()
                if name is None:
                    return rel if rel != "." else "."
                return name if rel == "." else f"{name}/{rel}"
    return f"$LOCAL/{p.name}" if p.name else "$LOCAL"


def portable(obj: Any, data_dir: str | os.PathLike | None = None) -> Any:
    """``obj`` (JSON-like, with paths) with every absolute local path made portable (:func:`portable_path`)."""
    if isinstance(obj, dict):
        return {str(k): portable(v, data_dir) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, data_dir) for v in obj]
    if isinstance(obj, os.PathLike):
        return portable_path(obj, data_dir)
    if isinstance(obj, str):
        return _ABSOLUTE.sub(lambda m: portable_path(m.group(0), data_dir), obj)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return str(obj)


def absolute_paths(obj: Any) -> list[str]:
    """The absolute local paths recorded anywhere in ``obj`` (a valid file has none)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += absolute_paths(k) + absolute_paths(v)
    elif isinstance(obj, list):
        for v in obj:
            found += absolute_paths(v)
    elif isinstance(obj, str):
        found += _ABSOLUTE.findall(obj)
    return found


# ------------------------------------------------------------------------------------------------- the writer


def _cpu() -> tuple[str, dict[str, bool] | None]:
    model = platform.processor() or platform.machine()
    flags: set[str] | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in (platform.processor(), platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features") and flags is None:
                flags = set(value.split())
    except OSError:
        pass
    return model, None if flags is None else {f: f in flags for f in CPU_FLAGS}


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def code_commit() -> dict[str, Any]:
    """The commit of the metajax that runs (the package ``import metajax`` finds, without the working directory on
    the path) and whether its checkout is clean (no uncommitted changes to tracked :data:`CLEAN_PATHS`)."""
    out = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "import metajax, pathlib; print(pathlib.Path(metajax.__file__).resolve().parents[1])",
        ],
        capture_output=True,
        text=True,
    )
    src = out.stdout.strip() or str(ROOT)

    def git(*a: str) -> str | None:
        r = subprocess.run(["git", "-C", src, *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", *CLEAN_PATHS)
    return {"commit": commit or None, "clean": None if commit is None or dirty is None else not dirty}


def process_wall_s() -> float:
    """Seconds since this process started (from ``/proc``; elsewhere since this module was imported)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time() - _T0


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, OS, jax's backend and device kind, load (no jax import when jax is not loaded)."""
    cpu, flags = _cpu()
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "backend": None,
        "device_kind": None,
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import jax

        devices = jax.devices()
        info.update(backend=jax.default_backend(), device_kind=devices[0].device_kind, device_count=len(devices))
    except Exception as e:  # no jax, or no backend: say so rather than guess
        info["backend_error"] = f"{type(e).__name__}: {e}"[:200]
    return info


def xla_info(data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """``XLA_FLAGS`` in force, other ``XLA_*``/``JAX_*`` variables, and the jax configuration that moves numbers."""
    cfg: dict[str, Any] | None = None
    try:
        import jax

        cfg = {}
        for name in JAX_CONFIG:
            value = getattr(jax.config, name, None)
            cfg[name] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
    except ImportError:
        pass
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("XLA_", "JAX_")) and k != "XLA_FLAGS"}
    return portable({"XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "jax_config": cfg, "env": env}, data_dir)


def versions_info() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{m: _version(m) for m in VERSIONS[1:]}}


def script_command(script: str | os.PathLike, argv: Sequence[str] | None = None, data_dir=None) -> str:
    """``python benchmarks/SCRIPT.py ARGS`` (``argv`` defaults to this process's arguments), paths portable."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", portable_path(Path(script).resolve()), *portable([str(a) for a in args], data_dir)])


def provenance(
    script: str | os.PathLike | None = None,
    argv: Sequence[str] | None = None,
    *,
    config: Any = None,
    command: str | None = None,
    wall_s: float | None = None,
    code: dict[str, Any] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The ``"provenance"`` object of a result file written now (the schema in this module's docstring).

    ``script``/``argv``: the benchmark script and its arguments (default: this process's), or ``command`` given
    whole; ``config``: the parsed arguments (an ``argparse.Namespace`` is taken as ``vars``) or the run's
    config; ``wall_s``: defaults to the time since this process started; ``code``: a :func:`code_commit` taken
    earlier (before the run, so later edits cannot change what is recorded); ``data_dir``: the data directory in
    use, recorded as ``$DATA_DIR``.
    """
    if config is not None and hasattr(config, "__dict__") and not isinstance(config, dict):
        config = vars(config)
    if command is None:
        script = script or getattr(sys.modules.get("__main__"), "__file__", None) or sys.argv[0]
        command = script_command(script, argv, data_dir)
    code = code or code_commit()
    return {
        "schema": SCHEMA,
        "commit": code["commit"],
        "clean": code["clean"],
        "command": portable(command, data_dir),
        "config": portable(config, data_dir),
        "wall_s": round(process_wall_s() if wall_s is None else wall_s, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions_info(),
        "machine": machine_info(),
        "xla": xla_info(data_dir),
    }


def dump(payload: Any) -> str:
    return json.dumps(payload, indent=1, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, payload: Any, prov: dict[str, Any]) -> None:
    """Write ``payload`` with its provenance: in it under ``"provenance"`` (a dict), else in the sidecar."""
    path = Path(path)
    if isinstance(payload, dict):
        path.write_text(json.dumps({**payload, KEY: prov}, indent=1))
    else:
        path.write_text(json.dumps(payload, indent=1))
        path.with_name(path.stem + SIDECAR).write_text(dump(prov))


# ------------------------------------------------------------------------------------------------- the validator

_HEX40 = re.compile(r"[0-9a-f]{40}")
_INCOMPLETE_NOTE = "null fields are not known; benchmarks/provenance.py INCOMPLETE says why, per field"


def _check_field(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``name`` (dotted), or None."""
    ok = {
        "commit": lambda v: isinstance(v, str) and _HEX40.fullmatch(v),
        "clean": lambda v: isinstance(v, bool),
        "command": lambda v: isinstance(v, str) and v.strip(),
        "config": lambda v: isinstance(v, dict) and v,
        "wall_s": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
        "machine.cores": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "machine.cpu_flags": lambda v: isinstance(v, dict) and v and all(isinstance(b, bool) for b in v.values()),
        "xla.XLA_FLAGS": lambda v: isinstance(v, str),
        "xla.jax_config": lambda v: isinstance(v, dict) and v,
    }.get(name, lambda v: isinstance(v, str) and v.strip())
    return None if ok(value) else f"{name} = {value!r}"


def _get(prov: dict[str, Any], name: str) -> tuple[bool, Any]:
    node: Any = prov
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def units(results: Path = RESULTS) -> dict[str, Path]:
    """Every result unit, by its path relative to ``results``, mapped to the file that holds its provenance: each
    JSON file (not a sidecar) outside run directories, each run directory (a directory holding ``config.json``),
    and each other output (``.md``, ``.csv``, ``.png``) that no JSON file of its stem (or a prefix of it) describes,
    whose provenance is its sidecar."""
    out: dict[str, Path] = {}
    run_dirs = {p.parent for p in results.rglob("config.json")}
    for d in run_dirs:
        out[d.relative_to(results).as_posix() + "/"] = d / RUN_DIR_SIDECAR
    jsons = []
    for p in sorted(results.rglob("*.json")):
        if p.name.endswith(SIDECAR) or p.parent in run_dirs:
            continue
        jsons.append(p)
        side = p.with_name(p.stem + SIDECAR)
        out[p.relative_to(results).as_posix()] = side if side.is_file() else p
    for p in sorted(results.rglob("*")):
        if p.suffix not in (".md", ".csv", ".png") or any(d in p.parents for d in run_dirs):
            continue
        if not any(j.parent == p.parent and p.stem.startswith(j.stem) for j in jsons):
            out[p.relative_to(results).as_posix()] = p.with_name(p.stem + SIDECAR)
    return dict(sorted(out.items()))


def read(where: Path) -> dict[str, Any] | None:
    data = json.loads(where.read_text())
    if where.name.endswith(SIDECAR) or where.name == RUN_DIR_SIDECAR:
        return data if isinstance(data, dict) else None
    return data.get(KEY) if isinstance(data, dict) else None


def validate(name: str, prov: dict[str, Any] | None, incomplete: dict[str, dict[str, str]] | None = None) -> list:
    """The problems of result file ``name``'s provenance (empty: it validates, or is incomplete only as listed)."""
    listed = (INCOMPLETE if incomplete is None else incomplete).get(name, {})
    if name in NOT_RESULTS:
        return [] if prov is None else [f"{name}: listed in NOT_RESULTS but carries a provenance"]
    if prov is None:
        return [f"{name}: no provenance"]
    problems = []
    if prov.get("schema") != SCHEMA:
        problems.append(f"{name}: schema {prov.get('schema')!r}, not {SCHEMA!r}")
    if "added_in_commit" in prov and not _HEX40.fullmatch(str(prov["added_in_commit"])):
        problems.append(f"{name}: added_in_commit {prov['added_in_commit']!r}")
    for field in FIELDS:
        present, value = _get(prov, field)
        if field in listed:
            if not str(listed[field]).strip():
                problems.append(f"{name}: {field} is listed as unknown without a reason")
            if value is not None:
                problems.append(f"{name}: {field} is listed as unknown but is recorded ({value!r}): unlist it")
        elif not present:
            problems.append(f"{name}: {field} missing (record it, or list it in INCOMPLETE with the reason)")
        elif why := _check_field(field, value):
            problems.append(f"{name}: invalid {why}")
    for field in listed:
        if field not in FIELDS:
            problems.append(f"{name}: INCOMPLETE names {field!r}, not a field of the schema")
    for path in absolute_paths(prov):
        problems.append(f"{name}: absolute local path {path!r} in the provenance")
    return problems


def validate_all(results: Path = RESULTS) -> tuple[list[str], list[str], list[str]]:
    """``(valid, incomplete, problems)`` over every result unit in ``results``."""
    found = units(results)
    valid, incomplete, problems = [], [], []
    for name, where in found.items():
        prov = read(where) if where.is_file() else None
        issues = validate(name, prov)
        problems += issues
        if not issues and name not in NOT_RESULTS:
            (incomplete if INCOMPLETE.get(name) else valid).append(name)
    for name in sorted(set(INCOMPLETE) | set(NOT_RESULTS)):
        if name not in found:
            problems.append(f"{name}: listed, but there is no such result file")
    return valid, incomplete, problems


# ------------------------------------------------------------------------------------------------- listed files

NOT_RESULTS = {
    "reproduction/unbacked.json": "not a measurement: the numbers published before the results store began, shown "
    "only as 'not backed by a result file yet'; where they came from is what is not known",
}

_COMMIT = (
    "not recorded by the writer; added_in_commit is when the file was committed, not necessarily the code that ran"
)
_CLEAN = "not recorded by the writer (it recorded no commit)"
_WALL = "not recorded by the writer (the whole command's wall time; per-row times are in the rows)"
_VERSION = "not recorded by the writer (its machine record kept python, jax and optax only)"
_FLAGS = "not recorded by the writer (its machine record kept the CPU model name and core count only)"
_XLA = "not recorded by the writer"

_OLD = {  # what a file written with benchmarks/harness.py's machine() before this schema lacks
    "commit": _COMMIT,
    "clean": _CLEAN,
    "wall_s": _WALL,
    "versions.jaxlib": _VERSION,
    "versions.flax": _VERSION,
    "versions.numpy": _VERSION,
    "machine.cpu_flags": _FLAGS,
    "xla.XLA_FLAGS": _XLA,
    "xla.jax_config": _XLA,
}
_NO_COMMAND = {"command": "not recorded by the writer, and the script's arguments change what it writes"}
_NO_COMMAND_ARGS = {"command": "not recorded by the writer; config holds the parsed arguments it ran with"}
_TWO_CHECKOUTS = {
    "command": "benchmark workers run from checkouts of two commits (the file's 'command' says which), not one command"
}
_NO_CONFIG = {"config": "not recorded by the writer (the file keeps some settings beside its rows, not the arguments)"}
_CONSTANTS = {
    "config": "the script takes no arguments: its settings are the script's constants at the commit that ran, "
    "which is not known"
}
_NO_DEVICE = {
    "machine.backend": "not recorded by the writer, and the rows do not name a backend",
    "machine.device_kind": "not recorded by the writer, and the rows do not name a backend",
}
_NO_MACHINE = {  # with _OLD: files that recorded no machine and no versions at all
    f: "not recorded by the writer (it wrote the rows only)"
    for f in ("versions.python", "versions.jax", "versions.optax", "machine.cpu", "machine.cores", "machine.os")
}
_STORE = {  # results-store files (benchmarks/reproduce.py) written before this schema
    "versions.numpy": "not recorded by the writer (its versions record had no numpy)",
    "machine.cpu_flags": "not recorded by the writer (its machine record kept the CPU model name and core count only)",
    "xla.XLA_FLAGS": _XLA,
    "xla.jax_config": _XLA,
}
_RUN_DIR = {  # run directories copied from a metajax train run: config.json, summary.json, versions.json
    **{k: _OLD[k] for k in ("commit", "clean", "versions.numpy", "xla.XLA_FLAGS", "xla.jax_config")},
    "command": "not recorded (the run directory keeps the resolved config, not the command line)",
    "wall_s": "not recorded (summary.json has training and evaluation times, not the command's)",
    **{
        f: "not recorded (versions.json names the platform and device, not the CPU)"
        for f in ("machine.cpu", "machine.cpu_flags", "machine.cores", "machine.os")
    },
}

# Every result file whose provenance is not complete, and per unknown field, why (the field is null in the file).
INCOMPLETE: dict[str, dict[str, str]] = {
    "20261122-013349.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261122-013836.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261122-062949.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261122-070107.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261122-073502.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261122-073830.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261123-120314.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261123-152951.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261123-172500-conv.json": {**_OLD, **_NO_CONFIG},
    "20261123-180500-pool.json": {**_OLD, **_TWO_CHECKOUTS, **_NO_CONFIG},
    "20261123-200334-conv.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261123-201416-commits.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261123-205648-commits.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261123-232546.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261202-152656.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261202-191506.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261202-231406.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261203-001210.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "20261203-012101-cores.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261203-013351-processes.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-140611-same.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-142833-float32.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-144458-float32.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-145534-float32.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-145849-float32.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-151347-same.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-152336-plan.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-153024-mixed.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-170223-same.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261204-190937-mamlpp-equal-time.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261204-214337-mamlpp-ablation.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261204-mixed-omniglot-bfloat16/": {**_RUN_DIR},
    "20261204-mixed-omniglot-float32/": {**_RUN_DIR},
    "20261205-030503-mamlpp-cost.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261205-045008-pretrain-init.json": {**_OLD, **_NO_COMMAND_ARGS},
    "20261205-052704-memory-plan.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261205-053844-memory-plan.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261205-054058-memory-plan.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261205-065503-memory-plan.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261205-065920-memory-planner.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261205-072158-resnet12-reference.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261205-073226-pretrain-init.json": {**_OLD, **_NO_COMMAND_ARGS},
    "20261205-073552-resnet12-reference.json": {**_OLD, **_NO_COMMAND_ARGS, **_NO_DEVICE},
    "20261207-210904-same.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "20261207-214245-maml-rl-navigation.json": {**_OLD, **_NO_DEVICE},
    "20261207-214955-maml-rl-navigation.json": {**_OLD, **_NO_DEVICE},
    "20261207-220805-maml-rl-navigation.json": {**_OLD, **_NO_DEVICE},
    "conv_in_loop.md": {**_OLD, **_NO_MACHINE, **_CONSTANTS, **_NO_DEVICE},
    "federated.json": {**_OLD, **_CONSTANTS, **_NO_DEVICE},
    "finetune_omniglot.json": {**_OLD, **_NO_MACHINE, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "l2l-20261122-071113.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261122-073009.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-114431.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-115501.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-115614.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-115644.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-140854.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-181222.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-201956.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261123-210515.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261202-154839.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "l2l-20261203-010801.json": {**_OLD, **_NO_COMMAND, **_NO_CONFIG},
    "reproduction/finetune_omniglot_5w1s_maml.json": {**_STORE},
    "reproduction/omniglot_5w1s_fomaml.json": {**_STORE},
    "reproduction/omniglot_5w1s_maml.json": {**_STORE},
    "reproduction/omniglot_5w1s_maml_quickstart.json": {**_STORE},
    "reproduction/omniglot_5w1s_reptile.json": {**_STORE},
    "reproduction/sinusoid_anil.json": {**_STORE},
    "reproduction/sinusoid_fomaml.json": {**_STORE},
    "reproduction/sinusoid_maml.json": {**_STORE},
    "reproduction/sinusoid_meta_sgd.json": {**_STORE},
    "reproduction/sinusoid_reptile.json": {**_STORE},
    "reptile_ablation.json": {**_OLD, **_NO_MACHINE, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "reptile_tail.json": {**_OLD, **_NO_MACHINE, **_NO_COMMAND, **_NO_CONFIG, **_NO_DEVICE},
    "variance.json": {**_OLD, **_NO_MACHINE, **_CONSTANTS, **_NO_DEVICE},
    "variance_curvature.json": {**_OLD, **_NO_MACHINE, **_CONSTANTS, **_NO_DEVICE},
}


def main() -> int:
    valid, incomplete, problems = validate_all()
    for name in incomplete:
        print(f"incomplete: {name}: {', '.join(INCOMPLETE[name])}")
    for p in problems:
        print(f"INVALID {p}")
    print(
        f"{len(valid)} valid, {len(incomplete)} listed incomplete, {len(NOT_RESULTS)} not results, "
        f"{len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
