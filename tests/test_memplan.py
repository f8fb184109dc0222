"""The memory planner (runtime.memory_plan): its rule on known sizes, its settings, and a real run that uses it."""

import json

import pytest
from ml_collections import ConfigDict

from metajax._src.app import cli
from metajax._src.app.memplan import (
    budget_bytes,
    gradient_ladder,
    memory_settings,
    plan_record,
    planned_config,
    read_plan,
)
from metajax._src.memory import REMAT_LADDER, MemoryEstimate
from metajax._src.memory import plan_memory as plan

# a linear cost per strategy: fixed + per_task * chunk (bytes)
COSTS = {"exact": (100, 50), "exact_remat_dots": (100, 30), "exact_remat": (100, 20), None: (10, 5)}


def fake(costs=COSTS, curve=lambda fixed, per, chunk: fixed + per * chunk):
    calls = []

    def estimate(gradient, chunk):
        calls.append((gradient, chunk))
        return MemoryEstimate(0, 0, curve(*costs[gradient], chunk), 0, 0)

    return estimate, calls


def test_everything_fits_keeps_exact_and_vmaps_all_tasks():
    est, calls = fake()
    p = plan(est, REMAT_LADDER, tasks=8, budget=10**6)
    assert (p.gradient, p.chunk, p.task_chunk, p.peak_bytes) == ("exact", 8, None, 500)
    assert calls == [("exact", 1), ("exact", 2), ("exact", 8)]  # two to predict, one to confirm


def test_largest_fitting_divisor_and_its_confirmation():
    est, calls = fake()
    p = plan(est, REMAT_LADDER, tasks=12, budget=420)  # 100 + 50 c <= 420: c <= 6.4 -> 6 divides 12
    assert (p.gradient, p.chunk, p.task_chunk) == ("exact", 6, 6)
    assert calls == [("exact", 1), ("exact", 2), ("exact", 6)]
    assert p.peak_bytes <= p.budget_bytes


def test_a_prediction_that_does_not_hold_steps_down():
    # XLA's sizes are not linear: above 2 tasks each one costs twice the prediction
    curve = lambda fixed, per, c: fixed + per * c + (2 * per * (c - 2) if c > 2 else 0)  # noqa: E731
    est, calls = fake(curve=curve)
    p = plan(est, REMAT_LADDER, tasks=8, budget=480)  # predicts 7 -> tries 4 (400 + 200 = 600), then 2
    assert (p.gradient, p.chunk) == ("exact", 2)
    assert calls == [("exact", 1), ("exact", 2), ("exact", 4)]


def test_remat_only_when_one_exact_task_does_not_fit():
    est, _ = fake()
    p = plan(est, REMAT_LADDER, tasks=8, budget=140)  # exact 1 task: 150 > 140; remat_dots: 130, 2 tasks 160
    assert (p.gradient, p.chunk) == ("exact_remat_dots", 1)
    p = plan(fake()[0], REMAT_LADDER, tasks=8, budget=125)
    assert (p.gradient, p.chunk) == ("exact_remat", 1)
    assert [t.gradient for t in p.trials] == ["exact", "exact_remat_dots", "exact_remat", "exact_remat"]


def test_nothing_fits_says_what_would_help():
    with pytest.raises(MemoryError, match=r"even one task at a time with gradient exact_remat: XLA estimates "):
        plan(fake()[0], REMAT_LADDER, tasks=4, budget=110)


def test_odd_and_single_task_batches():
    est, calls = fake()
    p = plan(est, (None,), tasks=15, budget=60)  # no gradient choice (FOMAML...): 10 + 5c <= 60 -> c <= 10 -> 5
    assert (p.gradient, p.chunk) == (None, 5)
    assert calls == [(None, 1), (None, 15), (None, 5)]
    assert plan(fake()[0], (None,), tasks=1, budget=60).task_chunk is None


def test_a_backend_without_estimates_is_named():
    with pytest.raises(ValueError, match="no memory estimate"):
        plan(lambda g, c: None, ("exact",), tasks=4, budget=100)


def test_settings_are_checked_by_name():
    def cfg(**rt):
        return ConfigDict({"runtime": rt, "algorithm": "maml", "inner": {"gradient": "exact"}})

    assert memory_settings(cfg()) == ("off", None)
    assert memory_settings(cfg(memory_plan="auto", memory_budget_gb=16)) == ("auto", 16.0)
    with pytest.raises(ValueError, match=r"runtime.memory_plan must be one of \('off', 'chunk', 'auto'\), got 'on'"):
        memory_settings(cfg(memory_plan="on"))
    with pytest.raises(ValueError, match="runtime.memory_budget_gb must be a number of GB"):
        memory_settings(cfg(memory_plan="auto", memory_budget_gb=-1))
    with pytest.raises(ValueError, match="used by the memory planner only: add --set runtime.memory_plan=auto"):
        memory_settings(cfg(memory_budget_gb=8))
    assert gradient_ladder(cfg(), "auto") == REMAT_LADDER
    assert gradient_ladder(cfg(), "chunk") == ("exact",)
    c = cfg()
    c.inner.gradient = "exact_remat"
    assert gradient_ladder(c, "auto") == ("exact_remat",)  # a strategy chosen by the user stays
    c.algorithm = "fomaml"
    assert gradient_ladder(c, "auto") == (None,)
    assert budget_bytes(2.5) == 2_500_000_000
    assert budget_bytes(None, lambda: 1000) == 900
    with pytest.raises(ValueError, match="free memory of this device is unknown; give the budget with"):
        budget_bytes(None, lambda: None)


def test_the_plan_file_round_trips_and_a_damaged_or_edited_one_is_refused_naming_it(tmp_path):
    p = plan(fake()[0], REMAT_LADDER, tasks=12, budget=420)
    path = tmp_path / "memory_plan.json"
    record = plan_record(p, "auto", 4.2e-7)
    path.write_text(json.dumps(record))
    config = cli.load_config("omniglot_5w1s_maml", smoke=True)
    assert read_plan(tmp_path) == read_plan(tmp_path, config, 12) == (p, "auto", 4.2e-7)
    assert read_plan(tmp_path / "nowhere") is None
    legacy = {k: v for k, v in record.items() if k != "digest"}  # written before plans had a digest
    path.write_text(json.dumps(legacy))
    assert read_plan(tmp_path, config, 12) == (p, "auto", 4.2e-7)

    def refused(text, match, **kw):
        path.write_text(text)
        with pytest.raises(ValueError, match=match) as err:
            read_plan(tmp_path, **kw)
        assert str(path) in str(err.value) and "delete it to plan again" in str(err.value)

    refused('{"mode": "auto", "chunk": 5, "tasks"', "not a readable memory plan")
    refused(json.dumps({**record, "chunk": 5}), "not a readable memory plan")  # 5 does not divide 12 tasks
    refused(json.dumps({**record, "chunk": 4}), "its digest does not match its contents")
    # a plan may choose how the exact meta-gradient is computed, never another one, even without a digest
    first_order = {**legacy, "gradient": "first_order"}
    only = "says gradient 'first_order', but this run's planner may choose only 'exact' or"
    refused(json.dumps(first_order), only, config=config)
    refused(json.dumps(plan_record(p, "auto", None)), "plans 12 tasks per device, but this run has 6", tasks=6)
    out = planned_config(config, p)
    assert (out.data.task_chunk, out.inner.gradient, config.data.task_chunk) == ("6", "exact", "auto")


def test_a_run_plans_records_and_keeps_its_plan(tmp_path, capsys):
    """Sinusoid MAML, 8 tasks: a budget between the 4-task and 8-task programs' estimates gives chunks of 4."""
    from metajax._src.app.experiment import build
    from metajax._src.app.train import training_step_estimate

    sets = ["data.meta_batch_size=8", "data.shots=64", "data.query_shots=64", "runtime.memory_plan=auto"]
    config = cli.apply_overrides(cli.load_config("sinusoid_maml", smoke=True), sets)
    exp = build(config)
    four = training_step_estimate(exp, exp.learner_for("exact", 4)).peak_bytes
    eight = training_step_estimate(exp, exp.learner_for("exact", None)).peak_bytes
    assert four < eight
    budget_gb = (four + eight) / 2 / 1e9
    run = tmp_path / "run"
    args = ["train", "--smoke", "--run-dir", str(run), "--no-progress"]
    for s in [*sets, f"runtime.memory_budget_gb={budget_gb!r}"]:
        args += ["--set", s]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "memory plan chosen: gradient exact, 8 tasks per device in chunks of 4 (lax.map)" in err
    recorded, mode, requested = read_plan(run)
    assert (recorded.gradient, recorded.chunk, recorded.peak_bytes, mode) == ("exact", 4, four, "auto")
    assert json.loads((run / "summary.json").read_text())["memory_plan"]["chunk"] == 4
    assert json.loads((run / "config.json").read_text())["runtime"]["memory_plan"] == "auto"
    # resumed (longer): the recorded plan is kept, nothing is compiled to plan again
    assert cli.main([*args, "--set", "train.num_steps=400"]) == 0
    err = capsys.readouterr().err
    assert "keeping this run's memory plan: gradient exact, 8 tasks per device in chunks of 4" in err
    assert "planning memory" not in err


def test_a_budget_nothing_fits_is_refused_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    sets = ["runtime.memory_plan=chunk", "runtime.memory_budget_gb=1e-6"]  # 1 kB
    args = ["train", "--smoke", "--run-dir", str(run), "--no-progress"] + [a for s in sets for a in ("--set", s)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "runtime.memory_plan=chunk: the step does not fit the memory budget of 1 kB even one task at a time" in err
    assert "Raise runtime.memory_budget_gb if the device has more" in err
    assert not run.exists()
