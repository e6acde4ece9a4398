"""The C++ depthwise kernel ('ffi') computes what 'grouped' and 'shifted' do, gradients included,
bitwise reproducibly and per device under data parallelism; where it is not available, asking
for it is a one-line ConfigError that says why and what to do."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from configs import v3_small
from mobilenet_jax import errors
from mobilenet_jax.models.registry import create_model
from mobilenet_jax.ops import depthwise, implementations, kernels
from mobilenet_jax.ops.padding import PADDINGS, spatial_padding

needs_kernels = pytest.mark.skipif(
    not kernels.built() or os.environ.get(kernels.ENV_SWITCH) == 'off',
    reason=f'the C++ kernels are not built ({kernels.LIBRARY} missing: bash setup.sh, needs g++)'
    if not kernels.built() else f'the C++ kernels are switched off ({kernels.ENV_SWITCH}=off)')


def _inputs(shape, kernel_shape, stride, padding):
  """x, kernel and pads as DepthwiseConv passes them (taps reading only padding dropped)."""
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (*kernel_shape, 1, shape[-1]))
  pads = tuple(spatial_padding(size, k, stride, padding)
               for size, k in zip(shape[1:3], kernel_shape))
  return depthwise.drop_padding_taps(x, kernel, stride, pads)


def _output_and_gradients(impl, x, kernel, stride, pads):
  fn = jax.jit(lambda x, kernel, cotangent: (
      lambda y, vjp: (y, *vjp(cotangent)))(*jax.vjp(
          lambda x, k: depthwise.IMPLEMENTATIONS[impl](x, k, stride, pads), x, kernel)))
  shape = jax.eval_shape(lambda: depthwise.IMPLEMENTATIONS['grouped'](x, kernel, stride, pads))
  return fn(x, kernel, jax.random.normal(jax.random.key(2), shape.shape))


def _assert_agree(x, kernel, stride, pads, reference='grouped'):
  got = _output_and_gradients('ffi', x, kernel, stride, pads)
  want = _output_and_gradients(reference, x, kernel, stride, pads)
  for name, g, w in zip(('output', 'input gradient', 'kernel gradient'), got, want):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5, err_msg=f'{name} vs {reference}')


@needs_kernels
def test_built_kernels_load():
  assert kernels.unavailable_reason() is None
  assert 'ffi' in depthwise.IMPLEMENTATIONS and 'ffi' in depthwise.CHOICES


@needs_kernels
@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('kernel', [3, 5, 7])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('height, width', [(7, 8), (8, 7)])
def test_ffi_agrees_with_grouped(padding, kernel, stride, height, width):
  # 20 channels: one block of 16 in the kernels' vector loop and a tail of 4.
  x, k, pads = _inputs((3, height, width, 20), (kernel, kernel), stride, padding)
  _assert_agree(x, k, stride, pads)


@needs_kernels
@pytest.mark.parametrize('stride', [1, 2])
def test_ffi_agrees_with_shifted(stride):
  x, k, pads = _inputs((3, 7, 8, 20), (3, 3), stride, 'same')
  _assert_agree(x, k, stride, pads, reference='shifted')


@needs_kernels
@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('kernel, stride, height, width', [
    (3, 1, 1, 1), (5, 1, 2, 2), (5, 2, 1, 1), (5, 2, 2, 2), (7, 1, 2, 3), (7, 2, 2, 2),
    (5, 1, 2, 3)])
def test_ffi_agrees_on_shrunken_kernels(padding, kernel, stride, height, width):
  """The kernels drop_padding_taps leaves on small maps: 1x1, 2x2, 2x3, 3x3 from 5x5 and 7x7."""
  x, k, pads = _inputs((2, height, width, 5), (kernel, kernel), stride, padding)
  assert k.shape[:2] != (kernel, kernel)
  _assert_agree(x, k, stride, pads)


@needs_kernels
def test_ffi_asymmetric_padding_and_kernel():
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3))
  kernel = jax.random.normal(jax.random.key(1), (2, 3, 1, 3))
  _assert_agree(x, kernel, 2, ((0, 1), (2, 0)))


@needs_kernels
def test_ffi_is_bitwise_reproducible():
  """Big enough to be split over threads, and the kernel gradient over several partial sums."""
  x, kernel, pads = _inputs((8, 16, 16, 40), (3, 3), 1, 'symmetric')
  first, second = (_output_and_gradients('ffi', x, kernel, 1, pads) for _ in range(2))
  for a, b in zip(first, second):
    assert np.array_equal(np.asarray(a), np.asarray(b))


def _cpu_flags() -> set[str]:
  if sys.platform != 'linux':
    return set()
  flags = [line for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines()
           if line.startswith('flags')]
  return set(flags[0].split(':', 1)[1].split()) if flags else set()


@needs_kernels
@pytest.mark.parametrize('level, flag', [(1, 'avx'), (2, 'avx512f')])
@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('kernel', [(3, 3), (5, 5), (7, 7), (2, 3)])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('height, width', [(9, 12), (12, 9)])
def test_vector_loops_are_bitwise_the_plain_loops(level, flag, padding, kernel, stride, height,
                                                  width):
  """The AVX and AVX-512 loops (columns away from the padding) against the plain ones, forward
  and both gradients; 28 channels: a 16-wide block, an 8-wide one and a tail of 4."""
  if flag not in _cpu_flags():
    pytest.skip(f'the CPU has no {flag}: its loops cannot run here')
  x, k, pads = _inputs((2, height, width, 28), kernel, stride, padding)
  best = kernels.set_vector_level(level)
  try:
    vector = _output_and_gradients('ffi', x, k, stride, pads)
    kernels.set_vector_level(0)
    plain = _output_and_gradients('ffi', x, k, stride, pads)
  finally:
    kernels.set_vector_level(best)
  assert best >= level
  for name, v, p in zip(('output', 'input gradient', 'kernel gradient'), vector, plain):
    assert np.array_equal(np.asarray(v).view(np.uint32), np.asarray(p).view(np.uint32)), name


@needs_kernels
def test_ffi_runs_per_device_on_a_sharded_batch():
  """Over the suite's simulated devices, a batch-sharded gradient step agrees with 'shifted'
  without gathering the batch: each device runs the kernels on its own images."""
  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  x, kernel, pads = _inputs((2 * len(jax.devices()), 6, 6, 4), (3, 3), 2, 'same')

  def gradients(impl):
    loss = lambda k, x: jnp.sum(jnp.sin(depthwise.IMPLEMENTATIONS[impl](x, k, 2, pads)))
    return jax.grad(loss, argnums=(0, 1))

  sharded = jax.jit(gradients('ffi'), in_shardings=(NamedSharding(mesh, P()),
                                                    NamedSharding(mesh, P('data'))))
  compiled = sharded.lower(kernel, x).compile()
  hlo = compiled.as_text()
  assert 'mobilenet_jax_depthwise_forward' in hlo and 'all-gather' not in hlo
  got, want = compiled(kernel, x), jax.jit(gradients('shifted'))(kernel, x)
  assert got[1].sharding.spec == P('data')
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5)


def test_ffi_is_never_the_table_choice():
  """Where nothing is measured (the tests, multi-process runs) 'auto' keeps the pure-JAX table."""
  assert depthwise.resolve_implementation('auto') != 'ffi'
  assert 'ffi' not in depthwise.FASTEST_ON_BACKEND.values()


@needs_kernels
@pytest.mark.parametrize('dtype, measured', [(jnp.float32, True), (jnp.bfloat16, False)])
def test_auto_measures_ffi_for_float32_only(monkeypatch, tmp_path, capsys, dtype, measured):
  monkeypatch.setenv('MOBILENET_JAX_AUTOTUNE', 'on')
  monkeypatch.setenv('MOBILENET_JAX_CACHE_DIR', str(tmp_path))
  monkeypatch.setattr(implementations, '_decided', {})
  module = depthwise.DepthwiseConv(3, 1, dtype=dtype)
  x = jnp.ones((2, 6, 6, 4), dtype)
  params = module.init(jax.random.key(0), x)
  jax.jit(module.apply)(params, x)
  chosen = capsys.readouterr().out
  assert 'measured:' in chosen and ('ffi ' in chosen) == measured, chosen


@pytest.mark.parametrize('environment, reason', [
    ({kernels.ENV_SWITCH: 'off'}, 'MOBILENET_JAX_KERNELS=off is set'),
    ({}, 'the C++ kernels are not built (run `bash setup.sh`, which needs g++)')])
def test_unavailable_ffi_is_a_config_error(monkeypatch, tmp_path, environment, reason):
  monkeypatch.delenv(kernels.ENV_SWITCH, raising=False)
  for name, value in environment.items():
    monkeypatch.setenv(name, value)
  monkeypatch.setattr(kernels, 'LIBRARY', str(tmp_path / 'libdepthwise.so'))  # as if not built
  monkeypatch.delitem(depthwise.IMPLEMENTATIONS, 'ffi', raising=False)
  config = v3_small.get_config()
  config.model.depthwise_implementation = 'ffi'
  message = f"model.depthwise_implementation='ffi' is not available: {reason}"
  with pytest.raises(errors.ConfigError) as error:
    create_model(config.model)
  assert str(error.value) == message
  with pytest.raises(errors.ConfigError, match='is not available'):
    depthwise.DepthwiseConv(3, implementation='ffi').init(jax.random.key(0), jnp.ones((1, 4, 4, 2)))
  # The other implementations are unaffected.
  config.model.depthwise_implementation = 'shifted_vjp'
  create_model(config.model)


def test_switched_off_kernels_are_not_registered():
  """MOBILENET_JAX_KERNELS=off from the start of a process: as if the library were absent."""
  code = ('from mobilenet_jax.ops import depthwise; '
          "print('ffi' in depthwise.IMPLEMENTATIONS, 'ffi' in depthwise.CHOICES)")
  done = subprocess.run([sys.executable, '-c', code], cwd=pathlib.Path(__file__).parents[2],
                        env={**os.environ, kernels.ENV_SWITCH: 'off'}, capture_output=True,
                        text=True, check=True)
  assert done.stdout.split() == ['False', 'True']
