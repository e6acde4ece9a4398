"""Several hosts stop together: a SIGTERM to one of 2 processes on 127.0.0.1 stops both at the
same step, one the hosts agreed on (a multiple of preemption_check_every_steps), with its
checkpoint."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mobilenet_jax.train import checkpointing
from tests.train.test_multihost import _free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK_EVERY = 4
DRIVER = f"""
import sys
from mobilenet_jax.train import parallel
parallel.initialize_hosts()
from tests.train_fixtures import tiny_config, train_as_the_command_does
# Long enough that the signal comes mid-run; only the stop writes a checkpoint.
config = tiny_config(num_train_steps=5000, log_every_steps=1, eval_every_steps=5000,
                     checkpoint_every_steps=5000, preemption_check_every_steps={CHECK_EVERY})
train_as_the_command_does(config, sys.argv[1])
"""


@pytest.mark.slow
def test_a_sigterm_to_one_host_stops_both_at_the_same_step_with_a_checkpoint(tmp_path):
  port = _free_port()
  hosts = []
  for process_id in (0, 1):
    env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
           'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2',
           'JAX_PROCESS_ID': str(process_id)}
    hosts.append(subprocess.Popen([sys.executable, '-c', DRIVER, str(tmp_path)], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True))
  try:
    metrics = tmp_path / 'metrics.jsonl'  # its first line: training has started
    deadline = time.time() + 300
    while (not metrics.exists() or not metrics.read_text()) and time.time() < deadline:
      assert all(host.poll() is None for host in hosts)
      time.sleep(0.05)
    hosts[1].send_signal(signal.SIGTERM)
    outcomes = [host.communicate(timeout=300) for host in hosts]
  finally:
    for host in hosts:
      if host.poll() is None:
        host.kill()
  stopped_at = []
  for host, (_, err) in zip(hosts, outcomes):
    assert host.returncode == 143, err[-2000:]
    stopped_at.append(int(re.search(r'stopped by SIGTERM at step (\d+)', err).group(1)))
  assert stopped_at[0] == stopped_at[1] and stopped_at[0] % CHECK_EVERY == 0
  assert stopped_at[0] < 5000
  manager = checkpointing.create_manager(str(tmp_path), 3)
  assert manager.all_steps() == [stopped_at[0]]  # committed (orbax lists only finished ones)
  manager.close()
