"""Test-wide setup: eight simulated CPU devices, so data-parallel code is exercised on one CPU."""

import os

# Must be set before JAX initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Keras (a reference in the weight-import tests) on JAX, before anything imports it.
os.environ.setdefault('KERAS_BACKEND', 'jax')
