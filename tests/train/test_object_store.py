"""A run directory on an object store: TensorFlow's in-memory `ram://` file system stands in for
gs://. Every run file goes there; the checkpoints, which orbax writes through etils.epath and
tensorstore (neither knows ram://), go to a local folder that stands in for them."""

import signal

import jax
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_jax import train
from mobilenet_jax.errors import ConfigError, Preempted
from mobilenet_jax.train import checkpointing, preemption
from mobilenet_jax.train import workdir as run_dir
from tests.train_fixtures import mock_data, restored_checkpoint, tiny_config


@pytest.fixture
def store(tmp_path, monkeypatch):
  """A fresh ram:// folder, its checkpoints in `tmp_path`."""
  root = f'ram://{tmp_path.name}'
  real = checkpointing.checkpoint_dir
  monkeypatch.setattr(checkpointing, 'checkpoint_dir', lambda workdir: real(
      str(workdir).replace(root, str(tmp_path))))
  yield root
  if tf.io.gfile.exists(root):
    tf.io.gfile.rmtree(root)


def test_checkpoints_on_a_store_orbax_cannot_write_to_are_refused_in_one_line(tmp_path):
  with pytest.raises(ConfigError, match=r'^--workdir=ram://x/run is on a store that orbax '
                                        r'cannot write checkpoints to; give a local folder'):
    train.train_and_evaluate(tiny_config(), 'ram://x/run')
  assert not tf.io.gfile.exists('ram://x/run')  # refused before anything was written


def test_run_files_round_trip_on_a_store(store):
  workdir = f'{store}/run'
  run_dir.check_writable(workdir)
  run_dir.save_config(workdir, tiny_config())
  assert run_dir.state(workdir) == 'started' and run_dir.check_config(workdir, tiny_config())
  with tf.io.gfile.GFile(run_dir.join(workdir, run_dir.METRICS_FILE), 'w') as f:
    f.write(''.join(f'{{"step": {s}, "train_loss": 1.0}}\n' for s in (1, 2, 3)))
  run_dir.truncate_metrics(workdir, 2)
  assert [r['step'] for r in run_dir.read_metrics(workdir)] == [1, 2]
  run_dir.write_results(workdir, {'top1': 0.5})
  assert run_dir.state(workdir) == 'finished' and run_dir.read_results(workdir) == {'top1': 0.5}
  assert not tf.io.gfile.glob(f'{workdir}/*.tmp')  # written by renames, none left half-done


def _stop_at(monkeypatch, step: int):
  """SIGTERM's effect at `step`, as `preemption.StopRequest` records it."""
  original, calls = preemption.StopRequest.stop_now, []

  def stop_now(self):
    calls.append(1)
    if len(calls) == step:
      self.signal_number = signal.SIGTERM
    return original(self)
  monkeypatch.setattr(preemption.StopRequest, 'stop_now', stop_now)


@pytest.mark.slow
def test_a_run_on_a_store_stops_resumes_and_matches_an_uninterrupted_one(store, monkeypatch,
                                                                        capsys):
  whole, stopped = f'{store}/whole', f'{store}/stopped'
  with mock_data():
    expected = train.train_and_evaluate(tiny_config(), whole)
    with monkeypatch.context() as patch:
      _stop_at(patch, 3)
      with pytest.raises(Preempted, match='at step 3; checkpoint saved'):
        train.train_and_evaluate(tiny_config(), stopped)
    resumed = train.train_and_evaluate(tiny_config(), stopped)
  out = capsys.readouterr().out
  assert f'--workdir={stopped} is on a store without file locks' in out
  assert f'Resuming from the checkpoint of step 3 in {stopped}' in out
  assert {run_dir.CONFIG_FILE, run_dir.DATASET_FILE, run_dir.METRICS_FILE,
          run_dir.RESULTS_FILE} <= set(tf.io.gfile.listdir(stopped))
  assert tf.io.gfile.glob(f'{stopped}/events.out.tfevents.*')
  assert [r['step'] for r in run_dir.read_metrics(stopped) if 'train_loss' in r] == [1, 2, 3, 4]
  assert run_dir.read_results(stopped)['top1'] == expected['top1'] == resumed['top1']
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               restored_checkpoint(whole)['params'], restored_checkpoint(stopped)['params'])
