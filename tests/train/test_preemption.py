"""SIGTERM and SIGINT stop training after a checkpoint; the rerun ends where an uninterrupted
run does. (A real process signalled from outside: tests/train/test_kill_resume.py, slow.)"""

import os
import signal

import jax
import numpy as np
import pytest

from mobilenet_jax import train
from mobilenet_jax.data import input_pipeline
from mobilenet_jax.errors import Preempted
from mobilenet_jax.train import preemption
from mobilenet_jax.train import workdir as run_dir
from tests.train_fixtures import AUGMENTED, mock_data, restored_checkpoint, tiny_config


# With every augmentation on too: RandAugment, erasing, Mixup and CutMix resume exactly. The
# augmented case asserts all that the plain one does, on a superset of the input: plain is slow.
@pytest.mark.parametrize('augmentations', [pytest.param({}, marks=pytest.mark.slow), AUGMENTED],
                         ids=['plain', 'augmented'])
def test_sigterm_saves_the_step_in_flight_and_the_rerun_matches(augmentations, tmp_path,
                                                                monkeypatch):
  config = tiny_config(num_train_steps=6, checkpoint_every_steps=4, **augmentations)
  original = input_pipeline.train_batches

  def signalled_at_the_third_batch(*args):
    for i, batch in enumerate(original(*args), start=1):
      if i == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  with mock_data():
    train.train_and_evaluate(config, str(tmp_path / 'whole'))
    monkeypatch.setattr(input_pipeline, 'train_batches', signalled_at_the_third_batch)
    with pytest.raises(Preempted) as stopped:
      train.train_and_evaluate(config, str(tmp_path / 'stopped'))
    assert stopped.value.exit_status == 143
    assert str(stopped.value).startswith('stopped by SIGTERM at step 3; checkpoint saved')
    assert int(restored_checkpoint(tmp_path / 'stopped')['step']) == 3
    stopped_seconds = run_dir.train_seconds_until(str(tmp_path / 'stopped'), 3)
    assert stopped_seconds > 0  # steps 2 and 3 were timed (step 1 compiled)
    monkeypatch.setattr(input_pipeline, 'train_batches', original)
    results = train.train_and_evaluate(config, str(tmp_path / 'stopped'))
  # The stopped session's training time counts in the run's: it is not lost with the process.
  assert results['train_seconds'] > stopped_seconds
  whole, resumed = (restored_checkpoint(tmp_path / name) for name in ('whole', 'stopped'))
  assert int(whole['step']) == int(resumed['step']) == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), whole['params'],
               resumed['params'])
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers put back


def test_a_second_signal_acts_at_once():
  # The second signal goes to the handler from before; Python's own here, whatever earlier tests
  # in this pytest worker left installed.
  before = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with pytest.raises(KeyboardInterrupt):
      with preemption.StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal_number == signal.SIGINT and stop.stop_now(1)
        os.kill(os.getpid(), signal.SIGINT)
  finally:
    signal.signal(signal.SIGINT, before)
