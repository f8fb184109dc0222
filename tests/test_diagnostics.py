"""Exact vs first-order comparison: closed forms, definitions, finite differences, the command."""

import json

import jax
import numpy as np
import pytest
from conftest import mlp_loss, regression_tasks, tanh_mlp_init

from metajax._src import diagnostics as dg
from metajax._src.app import cli


@pytest.mark.x64
def test_one_d_example_matches_closed_form():
    r = dg.one_d_example()
    assert r["dtype"] == "float64"
    for key in ("exact", "first_order", "second_order"):
        np.testing.assert_allclose(r[key], r[key + "_closed_form"], rtol=1e-12)
    np.testing.assert_allclose(r["exact"] - r["first_order"], r["second_order_closed_form"], rtol=1e-12)


@pytest.mark.x64
def test_compare_meta_gradients_definitions_and_fd(key):
    tasks = regression_tasks(key)
    params = tanh_mlp_init(jax.random.fold_in(key, 1), sizes=(2, 4, 1))
    rep = dg.compare_meta_gradients(mlp_loss, params, tasks, inner_lr=0.1, num_inner_steps=2, finite_differences=True)
    g = {k: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(v)]) for k, v in rep["grads"].items()}
    o = rep["overall"]
    np.testing.assert_allclose(o["norm_second_order"], np.linalg.norm(g["exact"] - g["first_order"]), rtol=1e-12)
    np.testing.assert_allclose(o["rel_err_first"], o["norm_second_order"] / o["norm_exact"], rtol=1e-12)
    cos = g["exact"] @ g["first_order"] / np.linalg.norm(g["exact"]) / np.linalg.norm(g["first_order"])
    np.testing.assert_allclose(o["cos_exact_first"], cos, rtol=1e-12)
    assert o["rel_err_fd"] < 1e-7
    assert sum(s["size"] for s in rep["layers"].values()) == o["size"] == 2 * 4 + 4 + 4 + 1
    # as alpha -> 0 the second-order term vanishes relative to the gradient
    small = dg.compare_meta_gradients(mlp_loss, params, tasks, inner_lr=1e-4)["overall"]
    assert small["rel_err_first"] < 1e-3 < o["rel_err_first"]
    assert "**overall**" in dg.report_table(rep)


def test_grads_command_with_sweep(tmp_path, capsys):
    assert (
        cli.main(
            [
                "grads",
                "--hidden",
                "4",
                "--alpha",
                "0.01",
                "0.1",
                "--k",
                "1",
                "2",
                "--meta-batch-size",
                "3",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "closed form" in out and "| 2 | 0.1 |" in out
    rep = json.loads((tmp_path / "report.json").read_text())
    assert len(rep["sweep"]) == 4 and (tmp_path / "sweep.png").is_file()
    assert cli.main(["grads", "--alpha", "-1"]) == 2
    assert "--alpha must be finite and > 0" in capsys.readouterr().err
