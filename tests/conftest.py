"""Test-wide setup: eight simulated CPU devices, so data-parallel code is exercised on one CPU."""

import os

# Must be set before JAX initialises its backends. The suite compiles far more than it runs
# (tiny networks, a step or two each), and LLVM's -O0 compiles XLA:CPU's programs about a third
# faster; every comparison the tests make is between programs compiled alike or within a
# tolerance, and the commands they start inherit the same flags.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8 '
                      '--xla_backend_optimization_level=0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Keras (a reference in the weight-import tests) on JAX, before anything imports it.
os.environ.setdefault('KERAS_BACKEND', 'jax')
# 'auto' implementations from the table, not measured: fast, and the same programs in every test
# (tests/ops/test_implementations.py measures, into a cache of its own).
os.environ['MOBILENET_JAX_AUTOTUNE'] = 'off'

import shutil  # pylint: disable=g-import-not-at-top,wrong-import-position
import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

# Many tests build the same tiny model's init and steps in new closures, which jit compiles
# afresh (parameter init alone is ~10 s of XLA:CPU compile); a cache keyed by the compiled
# program serves the repeats: in this process, in the other pytest-xdist worker (the same
# directory for one test run) and, through the environment, in the commands the tests start.
# Programs quicker to compile than a second are not worth a file. Nothing carries over between
# test runs.
if 'MOBILENET_JAX_TEST_XLA_CACHE' not in os.environ:  # the first process; workers inherit it
  os.environ['MOBILENET_JAX_TEST_XLA_CACHE'] = tempfile.mkdtemp(prefix='mobilenet_jax_xla_')
_CACHE = os.environ['MOBILENET_JAX_TEST_XLA_CACHE']
os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '1'
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def pytest_sessionfinish(session):
  if not hasattr(session.config, 'workerinput'):  # the controller (or a run without workers)
    shutil.rmtree(_CACHE, ignore_errors=True)
