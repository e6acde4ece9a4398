"""'auto' implementations: the table without measurement, else measured once and cached on disk."""

import json
import os
import socket
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax import errors
from mobilenet_jax.ops import conv, depthwise, implementations
from mobilenet_jax.train import parallel, setup
from tests.train_fixtures import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INPUTS = [jax.ShapeDtypeStruct((2, 8, 8, 4), jnp.float32)]


def test_auto_without_measurement_is_the_backend_table():
  assert depthwise.resolve_implementation('auto') in depthwise.IMPLEMENTATIONS
  assert depthwise.resolve_implementation('grouped') == 'grouped'
  assert conv.resolve_implementation('auto') in conv.IMPLEMENTATIONS
  assert not implementations.measuring()  # the suite's setting (conftest)


@pytest.fixture
def measured(monkeypatch, tmp_path):
  monkeypatch.setenv('MOBILENET_JAX_AUTOTUNE', 'on')
  monkeypatch.setenv('MOBILENET_JAX_CACHE_DIR', str(tmp_path))
  monkeypatch.setattr(implementations, '_decided', {})
  return tmp_path / implementations.CACHE_FILE


def _slow(x):
  """The same function with half a million sines added times zero (XLA keeps them: 0 * nan
  is nan). An outer product, not a tile: XLA moves sin before a broadcast and turns the sum of a
  tile into one multiply, which left 'slow' at 0.04 ms, within timing noise of 'fast'."""
  return 2 * x + 0.0 * jnp.sum(jnp.sin(jnp.outer(x.reshape(-1), jnp.arange(1000.0))))


CANDIDATES = {'slow': _slow, 'fast': lambda x: 2 * x}


def _choose(name='auto', op='double'):
  return implementations.choose('model.f', name, CANDIDATES, {}, 'slow', op=op, inputs=INPUTS)


def test_auto_measures_the_fastest_once_and_caches_it(measured, monkeypatch, capsys):
  assert _choose() == 'fast'
  entry, = json.loads(measured.read_text()).values()
  assert entry['choice'] == 'fast' and entry['seconds']['slow'] > entry['seconds']['fast']
  assert 'model.f=auto for double 2x8x8x4:float32: fast (measured: fast' in capsys.readouterr().out
  assert _choose() == 'fast' and capsys.readouterr().out == ''  # decided: printed once
  # Another process (a fresh memory) reads the file, measuring nothing.
  monkeypatch.setattr(implementations, '_decided', {})
  monkeypatch.setattr(implementations, '_measure_all', lambda *a: pytest.fail('measured again'))
  assert _choose() == 'fast' and 'cached in' in capsys.readouterr().out
  key, = json.loads(measured.read_text())
  assert jax.devices()[0].device_kind in key and jax.__version__ in key and '2x8x8x4' in key


def test_changed_candidate_code_is_measured_again(measured, monkeypatch):
  """A cached choice belongs to the candidates' code (`version`: the C++ kernels' source hash for
  depthwise): a new version measures again, beside the old entry."""
  choose = lambda version: implementations.choose(
      'model.f', 'auto', CANDIDATES, {}, 'slow', op='double', inputs=INPUTS, version=version)
  assert choose('kernels aaa') == 'fast'
  monkeypatch.setattr(implementations, '_decided', {})
  measurements = []
  monkeypatch.setattr(implementations, '_measure_all',
                      lambda *a: measurements.append(a) or {'slow': 2.0, 'fast': 1.0})
  assert choose('kernels aaa') == 'fast' and not measurements  # the same code: cached
  assert choose('kernels bbb') == 'fast' and len(measurements) == 1
  assert sorted(k.rsplit('|', 1)[1] for k in json.loads(measured.read_text())) == [
      'kernels aaa', 'kernels bbb']


def test_candidates_take_turns_and_the_fastest_run_counts(monkeypatch):
  """One run of each candidate a round: a slow spell of the machine falls on all of them."""
  runs = []
  clock = iter(range(1000))
  monkeypatch.setattr(implementations.time, 'perf_counter', lambda: float(next(clock)))
  monkeypatch.setattr(implementations, '_runner',
                      lambda fn, arrays, cotangent, differentiated: lambda: runs.append(fn))
  candidates = {'a': lambda x: x, 'b': lambda x: 2 * x}
  monkeypatch.setattr(implementations, '_SECONDS_PER_CANDIDATE', 1e6)
  seconds = implementations._measure_all(candidates, INPUTS)
  assert runs == [candidates['a'], candidates['b']] * implementations._ROUNDS
  assert seconds == {'a': 1.0, 'b': 1.0}  # each run read the fake clock twice in a row


def test_inference_is_measured_on_the_forward_pass_alone(measured, monkeypatch, capsys):
  """Train (batch statistics mutable) and inference make separate choices: the forward pass
  plus gradients, and the forward pass alone, timed each."""
  timed = []
  monkeypatch.setattr(implementations, '_runner',
                      lambda fn, arrays, cotangent, differentiated: timed.append(differentiated)
                      or (lambda: None))
  layer = conv.Conv(4, 3, 2)
  x = jnp.ones((2, 8, 8, 3))
  variables = layer.init(jax.random.key(0), x)
  assert not timed  # init takes the table
  layer.apply(variables, x, mutable=['batch_stats'])
  assert timed == [True] * 3
  layer.apply(variables, x)
  assert timed == [True] * 3 + [False] * 3
  assert 'forward pass only' in capsys.readouterr().out
  assert sorted(key.endswith('|forward only') for key in json.loads(measured.read_text())) == [
      False, True]


def test_a_named_implementation_is_forced_and_bad_names_stop(measured):
  assert _choose('slow') == 'slow'
  assert not measured.exists()
  with pytest.raises(errors.ConfigError, match='model.f'):
    _choose('fastest')


def test_a_corrupt_cache_is_measured_again_and_rewritten(measured):
  measured.write_text('{"half a fi')
  assert _choose() == 'fast'
  assert json.loads(measured.read_text())  # whole again


@pytest.mark.parametrize('module, field', [
    (lambda impl: depthwise.DepthwiseConv(3, 2, implementation=impl), 'depthwise'),
    (lambda impl: conv.Conv(6, 1, implementation=impl), 'conv'),
])
def test_modules_run_the_measured_choice(measured, capsys, module, field):
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 9, 4)), jnp.float32)
  params = module('auto').init(jax.random.key(0), x)
  assert capsys.readouterr().out == ''  # init takes the table: its one-image batch is no step's
  y = jax.jit(module('auto').apply)(params, x)
  chosen = capsys.readouterr().out
  assert f'model.{field}_implementation=auto for {field}' in chosen
  name = json.loads(measured.read_text()).popitem()[1]['choice']
  np.testing.assert_allclose(y, module(name).apply(params, x), rtol=1e-6, atol=1e-6)


def test_auto_measures_one_devices_share_of_the_batch_on_the_device(measured, monkeypatch,
                                                                     capsys):
  """8 simulated devices, a global batch of 64: every layer of the train step is measured on
  the 8 examples a device runs, from inputs drawn there (jax arrays, not host arrays)."""
  measured_inputs, measure_all = [], implementations._measure_all

  def record(candidates, inputs, differentiated=True):
    measured_inputs.append(inputs)
    return {name: float(i) for i, name in enumerate(sorted(candidates))}
  monkeypatch.setattr(implementations, '_measure_all', record)
  config = tiny_config(batch_size=64)
  compiled = parallel.compile_steps(setup.build_model(config), config, steps_per_epoch=10,
                                    num_steps=3, devices=jax.devices()[:8])
  sharded = compiled.sharded
  batch = {'image': jax.ShapeDtypeStruct((64, 16, 16, 3), jnp.float32, sharding=sharded),
           'label': jax.ShapeDtypeStruct((64,), jnp.int32, sharding=sharded)}
  compiled.train_step.trace(compiled.abstract_state, batch)
  assert measured_inputs and all(inputs[0].shape[0] == 8 for inputs in measured_inputs)
  assert '64x' not in capsys.readouterr().out  # the report names the shapes measured
  runs = []
  monkeypatch.setattr(implementations, '_runner', lambda fn, arrays, cotangent, differentiated:
                      runs.append(arrays) or (lambda: None))
  measure_all(CANDIDATES, INPUTS)
  assert isinstance(runs[0][0], jax.Array) and runs[0][0].shape == INPUTS[0].shape


def test_a_measurement_over_the_memory_share_takes_the_table(measured, monkeypatch, capsys):
  monkeypatch.setattr(implementations, '_MEMORY_SHARE', 1e-12)
  monkeypatch.setattr(implementations, '_measure_all', lambda *a: pytest.fail('measured'))
  assert _choose() == 'slow'  # the table's default here
  assert 'slow (the table: measuring would take' in capsys.readouterr().out
  assert not measured.exists()


TWO_PROCESSES = """
import sys
import jax
import jax.numpy as jnp
from mobilenet_jax.ops import implementations
from mobilenet_jax.train import parallel
parallel.initialize_hosts()
if jax.process_index() == 1:
  implementations._measure_all = lambda *args: sys.exit('process 1 measured')
from tests.ops.test_implementations import CANDIDATES
for op in ('first', 'second'):
  choice = implementations.choose('model.f', 'auto', CANDIDATES, {}, 'slow', op=op,
                                  inputs=[jax.ShapeDtypeStruct((2, 8, 8, 4), jnp.float32)])
  print('chose', op, choice)
"""


def test_several_processes_run_the_choice_of_process_0(tmp_path):
  """Each process would measure on its own and might compile another program than its peers."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  processes = []
  for index in (0, 1):
    env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
           'MOBILENET_JAX_AUTOTUNE': 'on', 'MOBILENET_JAX_CACHE_DIR': str(tmp_path / str(index)),
           'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2',
           'JAX_PROCESS_ID': str(index)}
    processes.append(subprocess.Popen([sys.executable, '-c', TWO_PROCESSES], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outputs = [p.communicate(timeout=300) for p in processes]
  for process, (out, err) in zip(processes, outputs):
    assert process.returncode == 0, err[-2000:]
    assert 'chose first fast' in out and 'chose second fast' in out, out
  assert "(process 0's choice)" in outputs[1][0]
  assert (tmp_path / '0' / implementations.CACHE_FILE).exists()
  assert not (tmp_path / '1').exists()  # process 1 neither measured nor wrote a cache
