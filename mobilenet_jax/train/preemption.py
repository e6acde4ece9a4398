"""Stopping on SIGTERM or SIGINT without losing work.

Preemptible VMs, SLURM and Kubernetes send SIGTERM some seconds before they kill; Ctrl-C sends
SIGINT. While training, the first such signal only asks the loop to stop: it finishes the step
in flight, saves and commits a checkpoint, and exits with the signal's status (143, 130). A
second signal stops the process at once, as the signal would have without us.

On several hosts all must stop at the same step, so they agree on it: every `check_every` steps
each host says whether it was signalled (`process_allgather`). Not every step: the collective
runs on the devices behind the step in flight, so the host waits for it and the next batch's
fetch and copy no longer overlap the compute. Every 10 steps, a stop lands within seconds at
any step time a pod runs (docs/parallelism.md says why not jax's
`reached_preemption_sync_point`).
"""

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
  """A context in which the first SIGTERM or SIGINT is recorded instead of acted on."""

  def __init__(self, check_every: int = 1):
    self.signal_number: int | None = None
    self._check_every = check_every  # steps between the hosts' agreements (several hosts)
    self._previous = {}

  def __enter__(self) -> 'StopRequest':
    if threading.current_thread() is threading.main_thread():  # where Python runs handlers
      self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for number, handler in self._previous.items():
      signal.signal(number, handler)

  def _handle(self, number: int, frame) -> None:
    del frame
    if self.signal_number is not None:  # the second one: act as the signal would have
      self.__exit__()
      signal.raise_signal(number)
      return
    self.signal_number = number
    print(f'{signal.Signals(number).name}: stopping after this step with a checkpoint '
          '(send it again to stop at once)', flush=True)

  def stop_now(self, step: int) -> bool:
    """Whether to stop after `step`; on several hosts, at the steps that are multiples of
    `check_every`, whether any of them was signalled, so that all stop at the same step."""
    if jax.process_count() == 1:
      return self.signal_number is not None
    if step % self._check_every:
      return False
    numbers = multihost_utils.process_allgather(np.int32(self.signal_number or 0))
    if self.signal_number is None and numbers.max():
      self.signal_number = int(numbers.max())
    return self.signal_number is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signal_number).name
