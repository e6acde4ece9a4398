"""Several hosts: 2 processes on 127.0.0.1 with a device each train as 1 process with 2 devices
and as 1 device do, with dropout, drop path and Mixup/CutMix on: the data order, the global batch
row for row and every random draw of the step are functions of the config alone."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from mobilenet_jax.train import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = """
import sys
from mobilenet_jax.train import parallel
if len(sys.argv) > 2:
  parallel.initialize_hosts()
from mobilenet_jax import train
from tests.train_fixtures import RANDOM_STEP, mock_data, tiny_config
config = tiny_config(num_train_steps=4, batch_size=8, log_every_steps=1, eval_every_steps=4,
                     **RANDOM_STEP)
with mock_data():
  train.train_and_evaluate(config, sys.argv[1])
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(workdir, devices: int, process_id: int | None = None, port: int = 0):
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  args = [sys.executable, '-c', DRIVER, str(workdir)]
  if process_id is not None:
    env.update(JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(process_id))
    args.append('--distributed')
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _outcome(process, workdir):
  """The run's losses and final parameters, once its process has ended."""
  _, err = process.communicate(timeout=400)
  assert process.returncode == 0, err[-2000:]
  losses = [r['train_loss'] for r in map(json.loads, open(os.path.join(workdir, 'metrics.jsonl')))
            if 'train_loss' in r]
  # Into NumPy arrays: the two-process run's shardings name devices this process does not have.
  step_dir = os.path.join(workdir, 'checkpoints', '4')
  metadata = ocp.StandardCheckpointHandler().metadata(epath.Path(step_dir, 'default')).tree
  target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), metadata)
  manager = checkpointing.create_manager(str(workdir), 3)
  params = manager.restore(4, args=ocp.args.StandardRestore(target))['params']
  manager.close()
  return np.asarray(losses), np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)])


@pytest.mark.slow
def test_two_hosts_train_as_one_process_with_two_devices_and_as_one_device(tmp_path):
  port = _free_port()
  hosts = [_launch(tmp_path / 'hosts', 1, i, port) for i in (0, 1)]
  one = _launch(tmp_path / 'one_process', 2)
  single = _launch(tmp_path / 'one_device', 1)
  _outcome(hosts[1], tmp_path / 'hosts')
  host_losses, host_params = _outcome(hosts[0], tmp_path / 'hosts')
  losses, params = _outcome(one, tmp_path / 'one_process')
  single_losses, single_params = _outcome(single, tmp_path / 'one_device')
  assert len(losses) == 4
  np.testing.assert_allclose(host_losses, losses, atol=1e-5)
  np.testing.assert_allclose(single_losses, losses, atol=1e-5)
  np.testing.assert_allclose(host_params, params, atol=1e-5)
  np.testing.assert_allclose(single_params, params, atol=1e-5)


def _flip_bytes_of_largest_file(step_dir):
  files = [os.path.join(d, f) for d, _, names in os.walk(step_dir) for f in names]
  path = max(files, key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    data = f.read(64)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(b ^ 0x5A for b in data))


@pytest.mark.slow
def test_two_hosts_resume_alike_past_a_damaged_latest_checkpoint(tmp_path):
  """Process 0 finds the latest checkpoint damaged and moves it aside; both hosts resume from
  the one before, which process 0 chose, and end where an uninterrupted run does."""
  workdir, port = tmp_path / 'hosts', _free_port()
  hosts = [_launch(workdir, 1, i, port) for i in (0, 1)]
  one = _launch(tmp_path / 'one_process', 2)
  for process in hosts:
    _, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-2000:]
  _flip_bytes_of_largest_file(workdir / 'checkpoints' / '4')
  (workdir / 'results.json').unlink()
  port = _free_port()
  hosts = [_launch(workdir, 1, i, port) for i in (0, 1)]
  outs = [process.communicate(timeout=400)[0] for process in hosts]  # kept for _outcome
  assert 'checkpoint of step 4 is damaged' in outs[0]  # said once, by process 0
  assert all('Resuming from the checkpoint of step 2' in out for out in outs)
  _outcome(hosts[1], workdir)
  host_losses, host_params = _outcome(hosts[0], workdir)
  losses, params = _outcome(one, tmp_path / 'one_process')
  assert (workdir / 'checkpoints' / '4.corrupt').is_dir()
  assert json.loads((workdir / 'results.json').read_text())['steps'] == 4
  np.testing.assert_allclose(host_losses, losses, atol=1e-5)
  np.testing.assert_allclose(host_params, params, atol=1e-5)
