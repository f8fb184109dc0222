"""Test configuration: float32 unless a check needs float64, strict rank promotion, the suite split by cost.

Tests run in JAX's default float32, as the library does. A test marked ``@pytest.mark.x64`` (or a module, through
``pytestmark``) runs under ``jax.enable_x64``: its setup (module-scoped fixtures included), call and teardown, so
closed forms, finite differences and op-by-op references are checked at float64 tolerances. Rank promotion raises
(implicit broadcasting of mismatched ranks hides bugs). Strict *dtype* promotion is not used: optax's own Adam
bias correction (``1 - decay**count`` with an int32 count) fails under it.

Two commands: ``python -m pytest -n auto -q`` runs the fast suite (pyproject's default ``-m "not slow"``), what
a developer runs after each change; ``python -m pytest -n auto -q -m slow`` runs the long checks. ``.ci/run``
runs both. What is slow is said in one place, :data:`SLOW_FILES` and :data:`SLOW_TESTS` below (plus tests
marked ``@pytest.mark.slow`` in their files). End-to-end tests of one config read one run made once per session
(:func:`shared_run`) instead of training it once each.
"""

import contextlib
import os
import pathlib
import pickle
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# What the second command runs (-m slow), in one place beside the in-file ``@pytest.mark.slow`` marks. The fast
# suite keeps the unit tests of each of these files (messages, data layouts, planners, one-process checks), one
# end-to-end run (the sinusoid smoke run, shared through shared_run) and a cheaper check of each property.
# Whole files of end-to-end runs:
SLOW_FILES = {
    "tests/test_mamlpp_run.py",
}
# Single checks (every parametrisation of each) that take tens of seconds on 2 cores:
SLOW_TESTS = {
    # metajax train / pretrain / eval runs of a config, in-process or in subprocesses; kill -9 / SIGTERM resumes
    "tests/test_cli.py::test_benchmark_harness_runs_a_tiny_variant",
    "tests/test_cli.py::test_benchmark_run_writes_results_after_every_variant",
    "tests/test_cli.py::test_divergence_stops_with_a_clear_message_or_is_skipped",
    "tests/test_cli.py::test_eval_command_on_a_sinusoid_run",
    "tests/test_device_check.py::test_a_dropped_second_order_term_fails",
    "tests/test_device_check.py::test_a_right_implementation_passes_and_the_table_has_every_column",
    "tests/test_diagnostics.py::test_grads_command_with_sweep",
    "tests/test_docs.py::test_readme_library_example_runs_as_written",
    "tests/test_doctests.py::test_docstring_examples",
    "tests/test_fewshot.py::test_tiny_omniglot_run_lowers_query_loss",
    "tests/test_fewshot.py::test_train_then_eval_commands",
    "tests/test_loto.py::test_leave_one_group_out_runs_every_fold_and_reports_the_ratio",
    "tests/test_memplan.py::test_a_run_plans_records_and_keeps_its_plan",
    "tests/test_miniimagenet.py::test_smoke_training_run_and_its_best_parameters_survive_the_loss_of_best_msgpack",
    "tests/test_pretrain.py::test_pretrain_resumes_exactly_and_train_starts_from_its_backbone",
    "tests/test_resume.py::test_annealed_run_cannot_be_extended",
    "tests/test_resume.py::test_kill_9_then_resume_is_bit_identical",
    "tests/test_resume.py::test_more_steps_extend_the_run",
    "tests/test_resume.py::test_other_config_in_same_run_dir_is_refused",
    "tests/test_resume.py::test_sigterm_saves_and_resumes",
    "tests/test_rundir.py::test_a_full_disk_at_a_checkpoint_is_one_line_naming_the_checkpoint",
    "tests/test_rundir.py::test_a_huge_batch_is_refused_by_the_memory_check_before_any_batch_is_sampled",
    "tests/test_rundir.py::test_integer_images_are_refused_by_every_convolution",
    "tests/test_sharding.py::test_train_command_on_four_devices",
    "tests/test_sharding.py::test_train_command_splits_the_cpu_into_task_streams",
    "tests/test_tiered.py::test_pretraining_reads_the_host_split_and_train_starts_from_it",
    # the whole Omniglot copy read and converted (~15 s), and the 8-device subprocess (~30 s) behind the sharding checks
    "tests/test_omniglot.py::test_standard_splits",
    "tests/test_omniglot.py::test_tfds_counts_match",
    "tests/test_omniglot.py::test_zips_and_tfds_give_identical_arrays",
    "tests/test_sharding.py::test_sharded_evaluation_equals_the_single_device_one",
    "tests/test_sharding.py::test_sharded_meta_steps_equal_the_single_device_ones",
    "tests/test_sharding.py::test_uneven_task_batches_and_too_many_devices_are_refused",
    # numerics: Conv4 / ResNet-12 to second and third order, every convolution strategy, larger learners
    "tests/test_algorithms.py::test_anil_flax_head_selector",
    "tests/test_algorithms.py::test_batched_reptile_is_mean_of_serial_updates_from_same_start",
    "tests/test_algorithms.py::test_fomaml_is_query_gradient_at_adapted_params",
    "tests/test_algorithms.py::test_meta_sgd_rate_gradient_matches_finite_differences",
    "tests/test_imaml.py::test_conv_net_with_custom_vjp_layers",
    "tests/test_imaml.py::test_matches_dense_hessian_solve",
    "tests/test_imaml.py::test_memory_is_flat_in_k_where_exact_grows",
    "tests/test_invariants.py::test_meta_step_jit_equals_no_jit",
    "tests/test_invariants.py::test_vmap_equals_loop_and_chunks",
    "tests/test_maml.py::test_exact_maml_check_grads",
    "tests/test_maml.py::test_remat_gives_the_same_gradient",
    "tests/test_mamlpp.py::test_per_step_batch_norm_with_identical_rows_equals_shared_batch_norm",
    "tests/test_mamlpp.py::test_per_step_running_statistics_equal_a_hand_computation",
    "tests/test_mamlpp.py::test_running_statistics_and_key_resume_bit_exactly_from_a_checkpoint",
    "tests/test_mamlpp.py::test_vmap_and_lax_map_agree_and_the_meta_step_threads_state_and_keys",
    "tests/test_mixed_precision.py::test_every_convolution_computes_in_bfloat16_and_returns_float32",
    "tests/test_mixed_precision.py::test_gradients_and_meta_gradients_stay_float32_and_close",
    "tests/test_models.py::test_batchnorm_policy",
    "tests/test_models.py::test_conv4_exact_meta_gradient_matches_finite_differences_k2",
    "tests/test_models.py::test_conv_implementations_agree_to_second_order",
    "tests/test_models.py::test_every_strategy_gives_the_reference_maml_meta_gradient_in_float32",
    "tests/test_models.py::test_jitted_maml_meta_gradient_matches_eager_at_conv4_64_width",
    "tests/test_models.py::test_non_transductive_query_loss_is_used",
    "tests/test_models.py::test_relu_max_pool_second_order_under_jit_matches_eager",
    "tests/test_models.py::test_relu_max_pool_splits_tied_gradients_like_autodiff",
    "tests/test_models.py::test_strided_conv4_is_the_reference_network_in_float64",
    "tests/test_models.py::test_vmapped_lax_conv_tasks_match_a_loop_in_float64",
    "tests/test_models.py::test_vmapped_tasks_match_a_loop_in_float64",
    "tests/test_models.py::test_winograd_conv3x3_is_lax_conv_with_correct_derivatives_to_third_order",
    "tests/test_models.py::test_winograd_layer_chooses_per_call_by_channels_size_and_batch",
    "tests/test_pretrain.py::test_backbone_transfer_keeps_the_fresh_head_and_checks_shapes",
    "tests/test_resnet.py::test_resnet12_gradient_agrees_with_plain_autodiff",
    "tests/test_resnet.py::test_without_a_key_the_stateful_resnet_is_deterministic_and_running_mode_scores_alone",
    "tests/test_variance.py::test_support_component_grows_like_alpha_squared",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark :data:`SLOW_FILES` and :data:`SLOW_TESTS` slow before ``-m`` selects (``tryfirst``)."""
    del config
    for item in items:
        path, _, rest = item.nodeid.partition("::")
        if path in SLOW_FILES or f"{path}::{rest.split('[')[0]}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _precision(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _precision(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _precision(item):
        return (yield)


def _precision(item):
    """float64 for a test marked ``x64`` (JAX's thread-local setting: each xdist worker sets its own)."""
    return jax.enable_x64(True) if item.get_closest_marker("x64") else contextlib.nullcontext()


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


def shared_run(name, *argv, timeout=900.0):
    """``metajax train *argv`` once per test session, shared by the tests that read its run: ``(directory, stderr)``.

    End-to-end tests of one config used to train it once each; they now read one run, made in-process by the first
    xdist worker to ask (the others wait, see :func:`session_shared`) in the session's private directory. Read it,
    never write it: a test that changes a run works on a copy (``shutil.copytree(run, tmp_path / "run")``).
    """

    def compute():
        import io

        from metajax._src.app import cli

        run = os.path.join(os.environ[_SESSION_DIR], "runs", name)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = cli.main(["train", *argv, "--run-dir", run])
        if rc != 0:
            raise RuntimeError(f"the shared run {name!r} ended with {rc}:\n{err.getvalue()[-3000:]}")
        return run, err.getvalue()

    run, err = session_shared(f"run-{name}", compute, timeout)
    return pathlib.Path(run), err


def float_dtype():
    """float64 under the ``x64`` mark, else float32."""
    return jnp.zeros(()).dtype


def tanh_mlp_init(key, sizes=(2, 6, 6, 1)):
    """A tiny smooth MLP (tanh) in the test's precision: finite differences need smoothness (and ``x64``)."""
    params = []
    dtype = float_dtype()
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        kw, _ = jax.random.split(jax.random.fold_in(key, i))
        params.append({"w": jax.random.normal(kw, (a, b), dtype) / jnp.sqrt(a), "b": 0.1 * jnp.ones((b,), dtype)})
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
    dtype = float_dtype()
    xs = jax.random.normal(k1, (num_tasks, shots, din), dtype)
    xq = jax.random.normal(k2, (num_tasks, query, din), dtype)
    w = jax.random.normal(k3, (num_tasks, din, 1), dtype)
    f = lambda x: jnp.sin(jnp.einsum("tnd,tdo->tno", x, w))  # noqa: E731
    return Task((xs, f(xs)), (xq, f(xq)))


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def trace_training_step(config):
    """Build a config's experiment and trace (not compile) its training step on a sampled batch's shapes.

    The cheap half of an every-config check: the config's settings, data, model and learner fit together and the
    meta-step traces; the configs whose smoke run shares model and algorithm with another config's are checked
    this way, the others by a real smoke run (compiling and running training, validation and test)."""
    from metajax._src.app.experiment import build
    from metajax._src.app.experiment_base import initial_meta_state, initial_run_params
    from metajax._src.app.runparams import split_run_params

    exp = build(config)
    key = jax.random.PRNGKey(0)
    start = initial_run_params(exp, key)
    ms = exp.make_meta_step()
    state = initial_meta_state(exp, ms, start, key)
    tasks = jax.eval_shape(lambda k, *data: exp.sample_tasks(k, *data), key, *exp.data)
    params, new_state, metrics = jax.eval_shape(ms.step, split_run_params(start)[0], state, tasks)
    assert jax.tree.structure(params) == jax.tree.structure(split_run_params(start)[0])
    assert "query_loss" in metrics or metrics, metrics
    return metrics
