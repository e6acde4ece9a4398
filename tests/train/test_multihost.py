"""Several hosts: 2 processes on 127.0.0.1 with a device each train as 1 process with 2 devices
and as 1 device do: the data order and the global batch are functions of the config alone."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER = """
import json, sys
import jax, numpy as np
from mobilenet_jax.train import parallel
if len(sys.argv) > 2:
  parallel.initialize_hosts()
from mobilenet_jax import train
from mobilenet_jax.train import checkpointing
from tests.train_fixtures import mock_data, tiny_config
config = tiny_config(num_train_steps=4, batch_size=8, log_every_steps=1, eval_every_steps=4,
                     **{'model.dropout_rate': 0.0})
with mock_data():
  train.train_and_evaluate(config, sys.argv[1])
if jax.process_index() == 0:
  import orbax.checkpoint as ocp
  manager = checkpointing.create_manager(sys.argv[1], 3)
  params = manager.restore(4, args=ocp.args.StandardRestore())['params']
  leaves = [np.asarray(x).ravel() for x in jax.tree.leaves(params)]
  print('PARAMS ' + json.dumps(np.concatenate(leaves).tolist()))
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
  out, err = process.communicate(timeout=400)
  assert process.returncode == 0, err[-2000:]
  losses = [r['train_loss'] for r in map(json.loads, open(os.path.join(workdir, 'metrics.jsonl')))
            if 'train_loss' in r]
  params = [json.loads(l[7:]) for l in out.splitlines() if l.startswith('PARAMS ')]
  return np.asarray(losses), np.asarray(params[0]) if params else None


@pytest.mark.slow
def test_two_hosts_train_as_one_process_with_two_devices_and_as_one_device(tmp_path):
  port = _free_port()
  hosts = [_launch(tmp_path / 'hosts', 1, i, port) for i in (0, 1)]
  one = _launch(tmp_path / 'one_process', 2)
  single = _launch(tmp_path / 'one_device', 1)
  (host_losses, host_params), _ = (_outcome(p, tmp_path / 'hosts') for p in hosts)
  losses, params = _outcome(one, tmp_path / 'one_process')
  single_losses, single_params = _outcome(single, tmp_path / 'one_device')
  assert len(losses) == 4
  np.testing.assert_allclose(host_losses, losses, atol=1e-5)
  np.testing.assert_allclose(single_losses, losses, atol=1e-5)
  np.testing.assert_allclose(host_params, params, atol=1e-5)
  np.testing.assert_allclose(single_params, params, atol=1e-5)
