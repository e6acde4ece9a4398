"""The loop's one predicate for periodic actions, and its throughput meter."""

import pytest

from mobilenet_jax.train import periodic


@pytest.mark.parametrize('every, total, steps', [
    (2, 7, [2, 4, 6, 7]), (3, 6, [3, 6]), (10, 4, [4]), (1, 3, [1, 2, 3])])
def test_itstime_every_n_steps_and_on_the_last(every, total, steps):
  assert [s for s in range(1, total + 1) if periodic.itstime(s, every, total)] == steps


@pytest.mark.parametrize('seconds, text', [(59, '0m59s'), (61, '1m01s'), (3725, '1h02m')])
def test_format_eta(seconds, text):
  assert periodic.format_eta(seconds) == text


def test_meter_rates_eta_and_the_timed_total_without_compilation(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(periodic.time, 'perf_counter', lambda: clock[0])
  meter = periodic.Meter(first_step=0, total_steps=30, batch_size=8)

  def run(steps, wait, work):
    for _ in range(steps):
      with meter.waiting_for_input():
        clock[0] += wait
      clock[0] += work

  run(10, 0.5, 1.5)  # the first interval: it compiled the step, so it is not in the total
  rates, eta = meter.lap(10, 10)
  assert rates == {'images_per_second': 80 / 20, 'input_wait_fraction': 0.25, 'seconds': 0.0}
  assert eta == 20 * 2.0 and (meter.timed_steps, meter.timed_seconds) == (0, 0.0)
  run(5, 0.0, 1.0)
  with meter.paused():  # an evaluation between two log lines
    clock[0] += 100.0
  run(5, 0.0, 1.0)
  rates, eta = meter.lap(20, 10)
  assert rates == {'images_per_second': pytest.approx(80 / 10), 'input_wait_fraction': 0.0,
                   'seconds': pytest.approx(10.0)}
  assert eta == pytest.approx(10 * 1.0)
  assert (meter.timed_steps, meter.timed_seconds) == (10, 10.0)
