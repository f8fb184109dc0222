"""Files: private temporary names, write probes, atomic writes, and JSON that strict parsers accept."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any


def private_name(directory: Path, stem: str) -> Path:
    """A hidden name in ``directory`` that no other process (or call) uses: ``.<stem>.<pid>.<random>``."""
    return Path(directory) / f".{stem}.{os.getpid()}.{uuid.uuid4().hex}"


def check_writable(directory: Path) -> None:
    """Raise ``OSError`` unless a file can be created and removed in ``directory``.

    The probe has a name of its own: processes checking the same directory at once (xdist workers enabling one
    compilation cache, the processes of a multi-process run checking their run directory) would otherwise remove
    each other's probe and report the directory unwritable.
    """
    probe = private_name(directory, "write_test")
    probe.write_text("")
    probe.unlink()


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a private temporary file and a rename: a reader sees the old or the new file.

    A crash mid-write leaves the previous file, never a truncated one; and when several processes of a
    multi-process run write the same file on a shared filesystem while another reads it (the config at start,
    ``best.msgpack`` before the best evaluation), no reader sees a half-written file.
    """
    path = Path(path)
    tmp = private_name(path.parent, f"{path.name}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def strict_json(obj: Any, indent: int | None = 1) -> str:
    """JSON that strict parsers accept: a non-finite float (a diverged loss) is written as ``null``."""
    return json.dumps(_finite_or_none(obj), indent=indent, allow_nan=False)


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj
