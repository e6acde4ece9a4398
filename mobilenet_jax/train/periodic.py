"""When the loop acts, and how fast it goes: one predicate for every periodic action, and a
meter of images/s, input wait and ETA between log lines."""

import contextlib
import time


def itstime(step: int, every_n_steps: int, total_steps: int) -> bool:
  """True every `every_n_steps` steps and on the last step (big_vision's `itstime` idea)."""
  return step == total_steps or (every_n_steps > 0 and step % every_n_steps == 0)


def format_eta(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


class Meter:
  """Throughput over each log interval, and over the run for the results record.

  The first interval after a start or resume includes compilation, so it is left out of the run's
  timed total; time spent evaluating is left out by `paused`. `seconds_before` is the training
  time of the run's earlier sessions up to `first_step`, so that `train_seconds` is the run's.
  """

  def __init__(self, first_step: int, total_steps: int, batch_size: int,
               seconds_before: float = 0.0):
    self._first_step, self._total_steps, self._batch_size = first_step, total_steps, batch_size
    self.timed_steps, self.timed_seconds = 0, 0.0
    self.seconds_before = seconds_before
    self._wait = 0.0
    self._start = time.perf_counter()

  @contextlib.contextmanager
  def waiting_for_input(self):
    start = time.perf_counter()
    yield
    self._wait += time.perf_counter() - start

  @contextlib.contextmanager
  def paused(self):
    """Time inside (an evaluation) is not training time; the steps of the interval before it
    keep theirs."""
    start = time.perf_counter()
    yield
    self._start += time.perf_counter() - start

  @property
  def train_seconds(self) -> float:
    """The run's training time so far, earlier sessions included."""
    return self.seconds_before + self.timed_seconds

  def lap(self, step: int, steps: int) -> tuple[dict[str, float], float]:
    """({'images_per_second', 'input_wait_fraction'} of the `steps` steps up to `step` since the
    last lap, and 'seconds', the run's training time up to `step`; ETA in seconds)."""
    elapsed = time.perf_counter() - self._start
    rates = {'images_per_second': steps * self._batch_size / elapsed,
             'input_wait_fraction': self._wait / elapsed}
    eta = (self._total_steps - step) * elapsed / steps
    if step - steps > self._first_step:  # not the interval that compiled the step
      self.timed_steps += steps
      self.timed_seconds += elapsed
    rates['seconds'] = self.train_seconds
    self._wait = 0.0
    self._start = time.perf_counter()
    return rates, eta
