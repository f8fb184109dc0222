"""Test configuration: float64 numerics and strict rank promotion.

Rank promotion raises (implicit broadcasting of mismatched ranks hides bugs).
Strict *dtype* promotion is not used: optax's own Adam bias correction
(``1 - decay**count`` with an int32 count) fails under it.
"""

import os
import pickle
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

CACHE_ENV = "METAJAX_COMPILE_CACHE"
_SESSION_CACHE = "_METAJAX_TEST_SESSION_CACHE"  # set by the process that owns the session cache
_SESSION_DIR = "_METAJAX_TEST_SESSION_DIR"  # results computed once per session (see session_shared)
_OWNER = "_METAJAX_TEST_SESSION_OWNER"  # pid of the process that created _SESSION_DIR


def pytest_configure(config):
    """One persistent compilation cache for the whole test session, shared by xdist workers and subprocesses.

    Many tests compile the same program in different processes (the CLI runs in subprocesses, a reference run
    and its resumed copy, the same reference gradient in two workers): each compiles it once per session. The
    cache is a fresh private directory, removed at the end, so no test reads a program another session stored
    and nothing lands in the user's ~/.cache (tests/test_compile_cache.py covers the cache with its own
    directories). ``METAJAX_TEST_COMPILE_CACHE=off`` runs the suite without it.
    """
    if not os.environ.get(_SESSION_DIR):  # the controller (or a run without xdist); workers inherit it
        os.environ[_SESSION_DIR] = tempfile.mkdtemp(prefix="metajax-test-session-")
        os.environ[_OWNER] = str(os.getpid())
    if os.environ.get("METAJAX_TEST_COMPILE_CACHE", "").lower() == "off":
        os.environ[CACHE_ENV] = "off"
        return
    if CACHE_ENV not in os.environ or not os.environ.get(_SESSION_CACHE):
        # the controller (or a run without xdist): workers are started after this and inherit the variables
        where = tempfile.mkdtemp(prefix="metajax-test-xla-")
        os.environ[CACHE_ENV] = where
        os.environ[_SESSION_CACHE] = str(os.getpid())
    from metajax import enable_compilation_cache

    enable_compilation_cache(os.environ[CACHE_ENV], min_compile_time_s=0.5)


def pytest_unconfigure(config):
    if os.environ.get(_SESSION_CACHE) == str(os.getpid()):
        shutil.rmtree(os.environ[CACHE_ENV], ignore_errors=True)
    if os.environ.get(_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ[_SESSION_DIR], ignore_errors=True)


def session_shared(name, compute, timeout=900.0):
    """``compute()`` once per test session, shared by the xdist workers: the first to ask computes, the others wait.

    Expensive references (an op-by-op second-order gradient, a training run, a subprocess on simulated devices)
    used to be computed by every worker that ran a test needing them. The result is pickled into the session's
    private directory (JAX arrays as NumPy arrays); a worker whose computation raises releases the claim, so a
    waiting worker computes it itself and reports its own error.
    """
    import numpy as np

    where = os.path.join(os.environ[_SESSION_DIR], name)
    done, claim = where + ".pkl", where + ".claim"
    t0 = time.monotonic()
    while not os.path.exists(done):
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:  # another worker is computing it
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"session_shared({name!r}): no result after {timeout:.0f} s") from None
            time.sleep(0.2)
            continue
        try:
            value = jax.tree_util.tree_map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, compute())
        except BaseException:
            os.remove(claim)
            raise
        with open(where + ".tmp", "wb") as f:
            pickle.dump(value, f)
        os.replace(where + ".tmp", done)
        return value
    with open(done, "rb") as f:
        return pickle.load(f)


def tanh_mlp_init(key, sizes=(2, 6, 6, 1)):
    """A tiny smooth MLP (tanh), float64: finite differences need smoothness."""
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        kw, _ = jax.random.split(jax.random.fold_in(key, i))
        params.append(
            {"w": jax.random.normal(kw, (a, b), jnp.float64) / jnp.sqrt(a), "b": 0.1 * jnp.ones((b,), jnp.float64)}
        )
    return params


def tanh_mlp_apply(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"][None, :])
    return x @ params[-1]["w"] + params[-1]["b"][None, :]


def mlp_loss(params, batch):
    x, y = batch
    return jnp.mean(jnp.square(tanh_mlp_apply(params, x) - y))


def regression_tasks(key, num_tasks=3, shots=5, query=7, din=2):
    """Random smooth regression tasks (x, y) with y a task-specific function."""
    from metajax import Task

    k1, k2, k3 = jax.random.split(key, 3)
    xs = jax.random.normal(k1, (num_tasks, shots, din), jnp.float64)
    xq = jax.random.normal(k2, (num_tasks, query, din), jnp.float64)
    w = jax.random.normal(k3, (num_tasks, din, 1), jnp.float64)
    f = lambda x: jnp.sin(jnp.einsum("tnd,tdo->tno", x, w))  # noqa: E731
    return Task((xs, f(xs)), (xq, f(xq)))


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
