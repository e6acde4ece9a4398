"""A run killed (SIGKILL) or stopped (SIGTERM) at an arbitrary moment resumes to the
uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest


from tests.train_fixtures import restored_checkpoint

DRIVER = """
import sys
from tests.train_fixtures import AUGMENTED, tiny_config, train_as_the_command_does
# Every augmentation on: what a kill could break (per-example seeds, the mixing key) is used.
config = tiny_config(num_train_steps=12, checkpoint_every_steps=3, eval_every_steps=12,
                     **AUGMENTED)
train_as_the_command_does(config, sys.argv[1])
"""


def _run(workdir, kill_after_checkpoint=None, signal_number=signal.SIGKILL) -> tuple[int, str]:
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  process = subprocess.Popen([sys.executable, '-c', DRIVER, str(workdir)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if kill_after_checkpoint is None:
    assert process.wait(timeout=300) == 0
    return 0, ''
  folder = workdir / 'checkpoints' / str(kill_after_checkpoint)
  deadline = time.time() + 300
  while not folder.exists() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  process.send_signal(signal_number)
  _, stderr = process.communicate(timeout=300)
  return process.returncode, stderr


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes_to_the_same_parameters(tmp_path):
  _run(tmp_path / 'whole')
  _run(tmp_path / 'killed', kill_after_checkpoint=6)
  _run(tmp_path / 'killed')
  whole, resumed = restored_checkpoint(tmp_path / 'whole'), restored_checkpoint(tmp_path / 'killed')
  assert int(whole['step']) == int(resumed['step']) == 12
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), whole['params'],
               resumed['params'])
  results = json.loads((tmp_path / 'killed' / 'results.json').read_text())
  assert results['steps'] == 12


@pytest.mark.slow
def test_sigterm_stops_with_a_checkpoint_and_the_rerun_matches(tmp_path):
  _run(tmp_path / 'whole')
  code, stderr = _run(tmp_path / 'stopped', kill_after_checkpoint=3,
                      signal_number=signal.SIGTERM)
  assert code == 143, stderr
  stopped_at = int(stderr.strip().splitlines()[-1].split('at step ')[1].split(';')[0])
  assert 3 <= stopped_at < 12 and (tmp_path / 'stopped' / 'checkpoints' / str(stopped_at)).is_dir()
  _run(tmp_path / 'stopped')
  whole, resumed = restored_checkpoint(tmp_path / 'whole'), restored_checkpoint(tmp_path / 'stopped')
  assert int(whole['step']) == int(resumed['step']) == 12
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), whole['params'],
               resumed['params'])
