"""Test-wide setup: eight simulated CPU devices, so data-parallel code is exercised on one CPU."""

import os

# Must be set before JAX initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Keras (a reference in the weight-import tests) on JAX, before anything imports it.
os.environ.setdefault('KERAS_BACKEND', 'jax')

import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

# Many tests build the same tiny model's init and steps in new closures, which jit compiles
# afresh (parameter init alone is ~10 s of XLA:CPU compile); a cache keyed by the compiled
# program serves the repeats. A fresh directory per run: nothing carries over between runs.
jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='mobilenet_jax_xla_'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
