"""Config files: find and load ``get_config(smoke)`` by name or path, and apply ``--set KEY=VALUE`` overrides."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from metajax._src.app.progress import say

DEFAULT_CONFIG = "sinusoid_maml"


def load_config(name: str, smoke: bool = False) -> Any:
    """Load ``get_config(smoke)`` from a config name (``sinusoid_maml``) or a ``.py`` path.

    Raises:
      ValueError: the config cannot be found, with the names that exist.
    """
    if name.endswith(".json"):  # a resolved config written into a run directory: rerun it exactly
        import json

        from ml_collections import ConfigDict

        path = Path(name)
        if not path.is_file():
            raise ValueError(f"--config: no such file {str(path)!r}.")
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(
                f"--config: {str(path)!r} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})."
            ) from None
        return distrust_stored_config(ConfigDict(stored), path)
    if name.endswith(".py") or os.sep in name:
        path = Path(name).resolve()
        if not path.is_file():
            raise ValueError(f"--config: no such file {str(path)!r}.")
        if (path.parent / "__init__.py").is_file():  # a package of configs: relative imports work
            sys.path.insert(0, str(path.parent.parent))
            module = importlib.import_module(f"{path.parent.name}.{path.stem}")
        else:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(f"metajax.configs.{name}")
        except ModuleNotFoundError as err:
            raise ValueError(
                f"--config: unknown config {name!r}; available: {', '.join(available_configs())}, "
                "or a path to a .py file defining get_config()."
            ) from err
    if not hasattr(module, "get_config"):
        raise ValueError(f"--config: {name!r} defines no get_config().")
    return module.get_config(smoke)


def available_configs() -> list[str]:
    import metajax.configs

    root = Path(metajax.configs.__file__).parent
    return sorted(p.stem for p in root.glob("*.py") if p.stem != "__init__" and "get_config" in p.read_text())


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal, ``nan`` / ``inf`` / ``-inf`` as floats (for the checks to name them),
    else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            return float(text)
        return text


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Apply ``key.sub=value`` overrides; unknown keys and wrong types raise ``ValueError``."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE (e.g. inner.lr=0.1), got {item!r}.")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = config
        for i, part in enumerate(parts):
            if not hasattr(node, "keys") or part not in node:
                where = ".".join(parts[:i]) or "<top>"
                known = sorted(node.keys()) if hasattr(node, "keys") else []
                raise ValueError(f"--set: unknown config key {key!r}: {where!r} has keys {known}.")
            if i < len(parts) - 1:
                node = node[part]
        value = parse_value(text)
        old = node[parts[-1]]
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        try:
            node[parts[-1]] = value
        except TypeError as err:
            raise ValueError(
                f"--set: {key} expects a value of type {type(old).__name__} (now {old!r}), got "
                f"{value!r} ({type(value).__name__})."
            ) from err
    return config


def distrust_stored_config(config: Any, path: Path) -> Any:
    """Drop the opt-ins that must come from the current command line, never from a file someone else wrote.

    ``data.allow_pickle`` lets a data loader unpickle files, which runs code: a run directory (or a config.json
    passed around) must not be able to switch it on. Give ``--set data.allow_pickle=True`` on the command line.
    """
    data = config.get("data", {})
    if data.get("allow_pickle", False):
        data.allow_pickle = False
        say(
            f"metajax: ignoring data.allow_pickle=True stored in {path}: unpickling runs code, so it is only allowed "
            "from this command line (--set data.allow_pickle=True)"
        )
    return config


def with_gradient(inner: Any, gradient: str | None) -> Any:
    """A copy of an ``inner`` config section with another ``gradient`` (``None``: ``inner`` itself)."""
    if gradient is None:
        return inner
    from ml_collections import ConfigDict

    out = ConfigDict(inner.to_dict())
    out.gradient = gradient
    return out
