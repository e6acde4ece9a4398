r"""What the hosts' stop check costs a train step: 2 processes on 127.0.0.1, one CPU device each.

  python -m experiments.stop_check_cost --rounds=10 --steps=20

Each process runs the loop's inner work (the host batch onto the devices, the train step, the
stop check) over blocks of --steps steps, taking turns between no check, the check every step
(what main did) and the check every config.preemption_check_every_steps, so a slow spell of a
loaded machine falls on all three; prints each one's median step time and its ratio to no check.
A ratio of one process against itself in one run: meaningful on a loaded machine too.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

_ROUNDS = flags.DEFINE_integer('rounds', 10, 'Blocks of each variant, interleaved.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Train steps a block.')
_BATCH = flags.DEFINE_integer('batch', 16, 'Global batch (images of 16 px, the tests\' model).')


def _launch(argv) -> None:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  hosts = [subprocess.Popen(
      [sys.executable, '-m', 'experiments.stop_check_cost', *argv[1:]],
      env={**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
           'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2',
           'JAX_PROCESS_ID': str(i)}) for i in (0, 1)]
  sys.exit(max(host.wait() for host in hosts))


def _measure() -> None:
  # pylint: disable=g-import-not-at-top
  from mobilenet_jax.train import parallel
  parallel.initialize_hosts()
  import jax
  from mobilenet_jax.train import preemption, setup
  from tests.train_fixtures import tiny_config
  config = tiny_config(batch_size=_BATCH.value, **{'model.dropout_rate': 0.0})
  compiled = parallel.compile_steps(setup.build_model(config), config, 10, 10**6)
  state = compiled.init()
  rng = np.random.default_rng(jax.process_index())
  local = _BATCH.value // jax.process_count()
  batch = {'image': rng.normal(size=(local, 16, 16, 3)).astype(np.float32),
           'label': rng.integers(0, 10, local)}
  variants = {'none': None, 'every step': 1,
              f'every {config.preemption_check_every_steps}': config.preemption_check_every_steps}
  seconds = {name: [] for name in variants}
  step = 0
  with preemption.StopRequest() as stop:
    for round_ in range(_ROUNDS.value + 1):  # the first round warms up
      for name, every in variants.items():
        stop._check_every = every or 1  # pylint: disable=protected-access
        start = time.perf_counter()
        for _ in range(_STEPS.value):
          step += 1
          state, metrics = compiled.train_step(state, compiled.to_devices(batch))
          if every is not None:
            stop.stop_now(step)
        jax.block_until_ready((state, metrics))
        if round_:
          seconds[name].append((time.perf_counter() - start) / _STEPS.value)
  if jax.process_index() == 0:
    for name, times in seconds.items():
      # Each round's ratio to its own 'none' block: the slow spells of the machine cancel.
      ratio = np.median(np.asarray(times) / np.asarray(seconds['none']))
      print(f'stop check {name:>10}: {1e3 * np.median(times):7.2f} ms a step '
            f'(median of the rounds\' ratios to no check: {ratio:.3f}x)', flush=True)


def main(argv) -> None:
  if 'JAX_PROCESS_ID' not in os.environ:
    _launch(argv)
  _measure()


if __name__ == '__main__':
  app.run(main)
