"""A run killed with SIGKILL at an arbitrary moment resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mobilenet_jax.train import checkpointing

DRIVER = """
import sys
from tests.train_fixtures import mock_data, tiny_config
from mobilenet_jax import train
config = tiny_config(num_train_steps=12, checkpoint_every_steps=3, eval_every_steps=12)
with mock_data():
  train.train_and_evaluate(config, sys.argv[1])
"""


def _run(workdir, kill_after_checkpoint=None):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  process = subprocess.Popen([sys.executable, '-c', DRIVER, str(workdir)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  if kill_after_checkpoint is None:
    assert process.wait(timeout=300) == 0
    return
  folder = workdir / 'checkpoints' / str(kill_after_checkpoint)
  deadline = time.time() + 300
  while not folder.exists() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()


def _params(workdir):
  manager = checkpointing.create_manager(str(workdir), 3)
  restored = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
  manager.close()
  return restored


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes_to_the_same_parameters(tmp_path):
  _run(tmp_path / 'whole')
  _run(tmp_path / 'killed', kill_after_checkpoint=6)
  _run(tmp_path / 'killed')
  whole, resumed = _params(tmp_path / 'whole'), _params(tmp_path / 'killed')
  assert int(whole['step']) == int(resumed['step']) == 12
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), whole['params'],
               resumed['params'])
  results = json.loads((tmp_path / 'killed' / 'results.json').read_text())
  assert results['steps'] == 12
