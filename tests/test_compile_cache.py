"""The persistent compilation cache: where it goes, that it stores and loads programs, and what it refuses."""

import os
import stat
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import pytest

import metajax as mj
from metajax._src import compile_cache as cc


@pytest.fixture
def restore_jax_cache_config():
    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_compilation_cache_max_size",
        "jax_enable_compilation_cache",
    )
    before = {n: getattr(jax.config, n) for n in names}
    yield
    mj.disable_compilation_cache()
    for n, v in before.items():
        jax.config.update(n, v)


@pytest.mark.usefixtures("restore_jax_cache_config")
def test_a_damaged_entry_is_replaced_by_the_program_compiled_instead(tmp_path):
    """JAX warns about a damaged entry and compiles, but never overwrites an existing entry; metajax's cache does,
    so only the first run after the damage pays the compile."""
    where = mj.enable_compilation_cache(tmp_path / "cache", min_compile_time_s=0)
    fn = jax.jit(lambda x: jnp.cos(x) @ x.T - 2.0)
    x = jnp.linspace(0.0, 1.0, 40).reshape(5, 8).block_until_ready()
    before = set(where.glob("*-cache"))
    expected = fn.lower(x).compile()(x)
    (entry,) = set(where.glob("*-cache")) - before
    good = entry.read_bytes()
    entry.write_bytes(good[: len(good) // 2])  # truncated
    jax.clear_caches()
    with pytest.warns(UserWarning, match="Error reading persistent compilation cache entry"):
        with cc.compilation_cache_events() as seen:
            got = fn.lower(x).compile()(x)
    assert seen["hits"] == 0 and jnp.array_equal(got, expected)
    assert entry.read_bytes() != good[: len(good) // 2] and len(entry.read_bytes()) > len(good) // 2
    jax.clear_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning this time: the entry was rewritten
        with cc.compilation_cache_events() as again:
            assert jnp.array_equal(fn.lower(x).compile()(x), expected)
    assert again["hits"] >= 1 and again["misses"] == 0


def test_resolve_order(monkeypatch, tmp_path):
    monkeypatch.delenv(cc.ENV, raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = cc.resolve_cache_dir()
    assert default == tmp_path / "xdg" / "metajax" / "xla" / cc.host_tag()
    assert cc.host_tag() == cc.host_tag() and cc.host_tag().count("-") >= 1
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert cc.resolve_cache_dir() == tmp_path / "jax"
    monkeypatch.setenv(cc.ENV, str(tmp_path / "env"))
    assert cc.resolve_cache_dir() == tmp_path / "env"
    assert cc.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    for off in ("off", "OFF", "none", "0", ""):
        assert cc.resolve_cache_dir(off) is None
    monkeypatch.setenv(cc.ENV, "off")
    assert cc.resolve_cache_dir() is None


@pytest.mark.usefixtures("restore_jax_cache_config")
def test_stores_and_loads_programs(tmp_path):
    where = mj.enable_compilation_cache(tmp_path / "cache", min_compile_time_s=0)
    assert where == tmp_path / "cache"
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    fn = jax.jit(lambda x: jnp.sin(x) @ x.T * 3.0)
    x = jnp.linspace(0.0, 1.0, 48).reshape(6, 8)
    with cc.compilation_cache_events() as first:
        expected = fn.lower(x).compile()(x)
    assert first["misses"] >= 1 and cc.cache_entries(where) >= 1
    jax.clear_caches()  # forget the in-memory executable: the next compile must come from disk
    with cc.compilation_cache_events() as second:
        again = fn.lower(x).compile()(x)
    assert second["hits"] >= 1 and second["misses"] == 0
    assert jnp.array_equal(expected, again)
    mj.disable_compilation_cache()
    jax.clear_caches()
    with cc.compilation_cache_events() as off:
        fn.lower(x).compile()
    assert off == {"hits": 0, "misses": 0}


@pytest.mark.usefixtures("restore_jax_cache_config")
def test_refuses_shared_and_survives_unwritable(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by other users"):
        mj.enable_compilation_cache(shared)
    if hasattr(os, "getuid") and os.getuid() == 0:  # only root can hand a directory to another user
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        with pytest.raises(PermissionError, match="owned by another user"):
            mj.enable_compilation_cache(other)
    # a private cache under a parent others may write to: they could swap the cache directory itself
    open_parent = tmp_path / "open"
    (open_parent / "cache").mkdir(parents=True, mode=0o700)
    open_parent.chmod(0o777)
    with pytest.raises(PermissionError, match="which others can write to without the sticky bit"):
        mj.enable_compilation_cache(open_parent / "cache")
    open_parent.chmod(0o1777)  # as /tmp: the sticky bit stops others from renaming what they do not own
    assert mj.enable_compilation_cache(open_parent / "cache") == open_parent / "cache"
    mj.disable_compilation_cache()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="running without a cache"):
        assert mj.enable_compilation_cache(blocker / "cache") is None
    assert jax.config.jax_compilation_cache_dir is None
    assert mj.enable_compilation_cache("off") is None
    with pytest.raises(ValueError, match="min_compile_time_s"):
        mj.enable_compilation_cache(tmp_path, min_compile_time_s=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        mj.enable_compilation_cache(tmp_path, max_bytes=0)


def test_cli_loads_the_step_from_the_cache_on_the_second_run(tmp_path):
    """Two processes: the first compiles and stores, the second loads (and says so)."""
    script = textwrap.dedent(
        """
        import sys
        import jax, jax.numpy as jnp
        from metajax._src.app.launch import use_compile_cache
        from metajax._src.compile_cache import compilation_cache_events as cache_events
        print(use_compile_cache(sys.argv[1]))
        step = jax.jit(lambda w, x: jnp.tanh(x @ w).sum())
        w, x = jnp.ones((32, 32)), jnp.ones((8, 32))
        with cache_events() as seen:
            step.lower(w, x).compile()
        print("hits", seen["hits"], "misses", seen["misses"])
        """
    )
    env = {**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "c")], capture_output=True, text=True, env=env, timeout=300
        )
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.split("\n"))
    assert runs[0][0] == f"compilation cache {tmp_path / 'c'}"
    assert runs[0][1] == "hits 0 misses 1" and runs[1][1] == "hits 1 misses 0"
