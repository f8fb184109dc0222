"""Memory estimates from XLA's buffer assignment, before anything runs."""

import jax
import jax.numpy as jnp
import pytest

from metajax._src import memory


def test_estimate_counts_arguments_outputs_and_donation():
    x = jnp.ones((512, 256), jnp.float32)  # 512 KiB
    est = memory.estimate_memory(lambda a: a * 2.0, x)
    assert est.argument_bytes == x.nbytes and est.output_bytes == x.nbytes
    donated = memory.compiled_memory(jax.jit(lambda a: a * 2.0, donate_argnums=0).lower(x).compile())
    assert donated.alias_bytes == x.nbytes and donated.peak_bytes == x.nbytes
    assert est.peak_bytes == 2 * x.nbytes + est.temp_bytes


def test_check_fits_reports_and_refuses():
    est = memory.MemoryEstimate(10 * memory.MB, 1 * memory.MB, 100 * memory.MB, 0, 0)
    line = memory.check_fits(est, "step", available=1000 * memory.MB)
    assert "XLA estimates 111 MB" in line and "1,000 MB free" in line
    with pytest.raises(MemoryError, match=r"step will not fit: XLA estimates 111 MB .* 100 MB free .* remat"):
        memory.check_fits(est, "step", available=100 * memory.MB)
    assert "no memory estimate" in memory.check_fits(None, "step")
    # CPU task streams: every device's buffers are in the same RAM
    two = est.times(2)
    assert two.peak_bytes == 2 * est.peak_bytes and two.temp_bytes == 200 * memory.MB
    assert "XLA estimates 111 MB" in memory.check_fits(est, "step", available=150 * memory.MB)
    with pytest.raises(MemoryError, match=r"XLA estimates 222 MB"):
        memory.check_fits(two, "step", available=150 * memory.MB)


def test_available_bytes_override(monkeypatch):
    monkeypatch.setenv("METAJAX_MEMORY_LIMIT_MB", "123")
    assert memory.available_bytes() == 123 * memory.MB
    monkeypatch.delenv("METAJAX_MEMORY_LIMIT_MB")
    free = memory.available_bytes()
    assert free is None or free > 0
