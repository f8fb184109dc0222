"""The test suite's own helper: session_shared computes once, shares across processes, releases a failed claim."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import session_shared


def test_computes_once_and_returns_numpy():
    name = f"selftest-{uuid.uuid4().hex}"
    calls = []

    def compute():
        calls.append(1)
        return {"a": jnp.arange(3.0), "b": "text"}

    first = session_shared(name, compute)
    again = session_shared(name, compute)
    assert len(calls) == 1
    assert isinstance(first["a"], np.ndarray) and first["b"] == "text"
    np.testing.assert_array_equal(again["a"], [0.0, 1.0, 2.0])


def test_a_failed_computation_releases_its_claim():
    name = f"selftest-{uuid.uuid4().hex}"

    def broken():
        raise RuntimeError("no reference today")

    with pytest.raises(RuntimeError, match="no reference today"):
        session_shared(name, broken)
    assert session_shared(name, lambda: 7) == 7  # not stuck waiting for the failed claim


def test_another_process_gets_the_stored_value():
    name = f"selftest-{uuid.uuid4().hex}"
    session_shared(name, lambda: [1, 2, 3])
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from conftest import session_shared; "
        "print(session_shared(sys.argv[2], lambda: 'recomputed'))"
    )
    here = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", code, here, name], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[1, 2, 3]"


def test_waits_for_a_claim_held_elsewhere_then_times_out():
    name = f"selftest-{uuid.uuid4().hex}"
    where = Path(os.environ["_METAJAX_TEST_SESSION_DIR"]) / name
    where.with_suffix(".claim").touch()  # a worker that never finishes
    with pytest.raises(TimeoutError, match="no result after"):
        session_shared(name, lambda: 1, timeout=0.5)
