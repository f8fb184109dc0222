"""A persistent compilation cache: compile a meta-step once per machine, not once per run.

Compiling exact MAML's step is the most memory-hungry moment of a CPU run: on
the Omniglot workload XLA's optimisation passes hold ~340 MB for ~3 s (about
30 KB per instruction of the optimised program), more than the step itself
needs when it runs, and take ~10 s. JAX can store compiled executables on disk
and load them instead of compiling; :func:`enable_compilation_cache` turns
that on for a directory, so a resumed run, a repeated evaluation or a second
run with the same shapes loads its step in a fraction of a second and never
reaches the compile-time peak (measured: ``benchmarks/learn2learn_side_by_side.py``
reports the peak RSS cold and cached side by side).

The default directory is per machine type (``$XDG_CACHE_HOME/metajax/xla/<cpu>``,
``<cpu>`` a digest of the CPU model and feature flags), because XLA:CPU
compiles for the host's instruction set and a home directory can be shared
between machines. JAX's own key covers the program, the jax/jaxlib versions,
the backend and the XLA flags.

A cache directory is trusted code: whoever can write to it can make JAX run
arbitrary code. The directory is created private (mode 0700); a directory
that others can write to, or that another user owns, is refused.

A damaged entry (a truncated file, flipped bits) makes JAX warn and compile
again, but JAX never overwrites an existing entry, so every later run would
warn and recompile too. :func:`enable_compilation_cache` wraps JAX's cache so
that an entry this process read and could not use is replaced by the program
it then compiled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metajax._src.files import check_writable

ENV = "METAJAX_COMPILE_CACHE"
OFF = ("off", "none", "0", "false", "no", "")
DEFAULT_MAX_BYTES = 2 * 2**30


def host_tag() -> str:
    """``<arch>-<12 hex digits>``: the CPU model and feature flags this process compiles for."""
    ident = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part", "cpu"):
                    ident.append(line.strip())
                elif not line.strip() and len(ident) > 2:
                    break  # the first processor's block is enough
    except OSError:  # no /proc (macOS, Windows): the architecture and processor string
        pass
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(chr(10).join(ident).encode()).hexdigest()[:12]}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metajax" / "xla" / host_tag()


def resolve_cache_dir(path: str | os.PathLike | None = None) -> Path | None:
    """Where the cache goes: ``path``, else ``$METAJAX_COMPILE_CACHE``, else :func:`default_cache_dir`.

    ``"off"`` (or ``none``, ``0``, ``false``, ``no``, empty) disables it. With
    neither argument nor ``$METAJAX_COMPILE_CACHE`` but JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` set, that directory is used.
    """
    if path is None:
        path = os.environ.get(ENV)
        if path is None:
            jax_dir = os.environ.get("JAX_COMPILATION_CACHE_DIR")
            return Path(jax_dir).expanduser() if jax_dir else default_cache_dir()
    text = os.fspath(path)
    if text.strip().lower() in OFF:
        return None
    return Path(text).expanduser()


def enable_compilation_cache(
    path: str | os.PathLike | None = None,
    *,
    min_compile_time_s: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path | None:
    """Store compiled programs under a directory and load them instead of recompiling.

    Args:
      path: the cache directory; ``None`` resolves it as :func:`resolve_cache_dir`
        does; ``"off"`` disables the cache (returns ``None``).
      min_compile_time_s: programs that compile faster than this are not stored
        (the many small helper programs); default ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``,
        else 1 s.
      max_bytes: the cache's size limit; least recently used entries go first.
        ``-1`` for no limit.

    Returns:
      The directory in use, or ``None`` when the cache is off. A directory
      that cannot be created or written to gives a warning and no cache (a
      run never fails for its cache); one that other users can write to is
      refused with ``PermissionError``.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    if min_compile_time_s is None:
        min_compile_time_s = float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 1.0))
    if not isinstance(min_compile_time_s, int | float) or min_compile_time_s < 0:
        raise ValueError(f"min_compile_time_s must be a number >= 0, got {min_compile_time_s!r}.")
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or (max_bytes < 1 and max_bytes != -1):
        raise ValueError(f"max_bytes must be a positive int or -1 (no limit), got {max_bytes!r}.")
    where = resolve_cache_dir(path)
    if where is None:
        disable_compilation_cache()
        return None
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        check_writable(where)
    except OSError as err:
        warnings.warn(
            f"compilation cache: cannot write to {str(where)!r} ({err.strerror}); running without a cache. "
            f"Set {ENV} to a writable directory or to 'off'.",
            RuntimeWarning,
            stacklevel=2,
        )
        disable_compilation_cache()
        return None
    info = where.stat()
    # a sticky bit does not help: others could still create entries under the names JAX will look up
    foreign = hasattr(os, "getuid") and info.st_uid != os.getuid()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or foreign:
        who = "owned by another user" if foreign else f"writable by other users (mode {stat.filemode(info.st_mode)})"
        raise PermissionError(
            f"compilation cache: {str(where)!r} is {who}; a compiled program loaded from it runs as you. "
            f"Use a private directory of your own (chmod go-w) or set {ENV}=off."
        )
    unsafe = _unsafe_ancestor(where)
    if unsafe is not None:
        raise PermissionError(
            f"compilation cache: {str(where)!r} is inside {unsafe}, which others can write to without the sticky "
            f"bit: they could replace the cache directory itself. Use a directory under a private parent or set "
            f"{ENV}=off."
        )
    cc.reset_cache()  # JAX initialises its cache once per process; a new directory needs a fresh start
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    _install_replacing_cache()
    return where


class _ReplacingCache:
    """JAX's file cache, except that an entry read in this process and then written (JAX writes a key only
    after compiling it, i.e. when the entry it read could not be used: damaged or not loadable) is replaced
    rather than kept. A damaged entry is derived data: it is dropped, not set aside. Keys JAX did not read
    here keep JAX's rule (an existing entry, e.g. written by a concurrent process, is left as it is)."""

    def __init__(self, base: Any):
        self._base = base
        self._read: set[str] = set()
        self.replaced: list[str] = []

    @property
    def _path(self) -> Any:
        return self._base._path

    @_path.setter
    def _path(self, value: Any) -> None:
        self._base._path = value

    def get(self, key: str) -> bytes | None:
        value = self._base.get(key)
        if value is not None:
            self._read.add(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if key in self._read:
            entry = Path(self._base._path) / f"{key}-cache"
            lock = getattr(self._base, "lock", None) if getattr(self._base, "eviction_enabled", False) else None
            if lock is not None:
                lock.acquire(timeout=getattr(self._base, "lock_timeout_secs", None))
            try:
                if entry.exists():
                    entry.unlink()
                    self.replaced.append(key)
            finally:
                if lock is not None:
                    lock.release()
            self._read.discard(key)
        self._base.put(key, value)

    def __getattr__(self, name: str) -> Any:  # clear() and anything else JAX may call
        return getattr(self._base, name)


def _install_replacing_cache() -> None:
    """Put :class:`_ReplacingCache` around JAX's initialised file cache (JAX internals: when they change, the
    cache keeps JAX's own behaviour; a test checks the replacement)."""
    try:
        from jax._src import compilation_cache as jcc

        jcc._initialize_cache()
        if jcc._cache is not None and not isinstance(jcc._cache, _ReplacingCache):
            jcc._cache = _ReplacingCache(jcc._cache)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another JAX's internals
        pass


def _unsafe_ancestor(path: Path) -> str | None:
    """The first parent of ``path`` that another user could rename entries in, described; ``None`` when safe.

    A parent writable by others is safe only with the sticky bit (as ``/tmp``), which stops them from renaming
    what they do not own; a parent owned by another user (other than root) could be changed by that user.
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    for parent in Path(path).resolve().parents:
        info = parent.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
            return f"{parent} (mode {stat.filemode(info.st_mode)})"
        if uid is not None and info.st_uid not in (uid, 0):
            return f"{parent} (owned by uid {info.st_uid})"
    return None


def disable_compilation_cache() -> None:
    """Turn the persistent cache off for the rest of the process."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    cc.reset_cache()
    jax.config.update("jax_compilation_cache_dir", None)


def cache_entries(path: str | os.PathLike) -> int:
    """How many compiled programs a cache directory holds."""
    p = Path(path)
    return sum(1 for f in p.glob("*-cache") if f.is_file()) if p.is_dir() else 0


@contextlib.contextmanager
def compilation_cache_events() -> Iterator[dict[str, int]]:
    """Count the persistent cache's hits and misses inside a ``with`` block.

    >>> with compilation_cache_events() as seen:  # doctest: +SKIP
    ...     compiled = jax.jit(step).lower(*args).compile()
    >>> seen  # doctest: +SKIP
    {'hits': 1, 'misses': 0}
    """
    from jax import monitoring

    seen = {"hits": 0, "misses": 0}
    names = {"/jax/compilation_cache/cache_hits": "hits", "/jax/compilation_cache/cache_misses": "misses"}

    def listener(event: str, **kwargs) -> None:
        if event in names:
            seen[names[event]] += 1

    monitoring.register_event_listener(listener)
    try:
        yield seen
    finally:
        monitoring.unregister_event_listener(listener)
