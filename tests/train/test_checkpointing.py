"""Checkpoints prove themselves: a damaged one is moved aside for the one before it, a failed
write names the last intact one, a config of another shape is refused, not blamed, and one
written before the state gained a field still resumes."""

import errno
import json
import os
import shutil
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax.training import train_state

from mobilenet_jax import train
from mobilenet_jax.errors import CheckpointWriteError, ConfigError
from mobilenet_jax.train import checkpointing, manifests, parallel, setup
from tests.train_fixtures import mock_data, restored_checkpoint, tiny_config


def _largest_file(folder):
  files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _largest_file(step_dir)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def _delete_metadata(step_dir):
  os.remove(os.path.join(step_dir, 'default', '_METADATA'))


def _flip_bytes(step_dir):
  path = _largest_file(step_dir)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    data = f.read(64)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(b ^ 0x5A for b in data))


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('whole')
  with mock_data():
    train.train_and_evaluate(tiny_config(), str(workdir))  # checkpoints of steps 2 and 4
  return workdir


@pytest.mark.parametrize('damage', [_truncate, _delete_metadata, _flip_bytes],
                         ids=lambda f: f.__name__.strip('_'))
def test_a_damaged_checkpoint_is_moved_aside_for_the_one_before(damage, finished_run,
                                                                 tmp_path, capsys):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run, workdir)
  damage(str(workdir / 'checkpoints' / '4'))
  config = tiny_config()
  compiled = parallel.compile_steps(setup.build_model(config), config, 3, 4)
  manager = checkpointing.create_manager(str(workdir), 3)
  state = checkpointing.restore_latest(manager, compiled.abstract_state)
  manager.close()
  out = capsys.readouterr().out
  assert 'checkpoint of step 4 is damaged' in out and 'moved aside to' in out
  assert int(state.step) == 2 and (workdir / 'checkpoints' / '4.corrupt').is_dir()
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               restored_checkpoint(finished_run, 2)['params'])


def test_a_config_of_another_shape_is_refused_and_nothing_moved(finished_run, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run, workdir)
  saved = json.loads((workdir / 'config.json').read_text())
  saved['model']['head_width'] = 32  # the record edited by hand: the checkpoints do not fit
  (workdir / 'config.json').write_text(json.dumps(saved))
  with mock_data(), pytest.raises(ConfigError, match='does not fit the config'):
    train.evaluate_latest(str(workdir))
  assert sorted(os.listdir(workdir / 'checkpoints')) == [
      '2', '2.integrity.json', '4', '4.integrity.json']


def test_a_failed_write_names_the_last_intact_checkpoint_and_leaves_no_partial(
    tmp_path, monkeypatch):
  original = ocp.CheckpointManager.save

  def save_until_full(self, step, *args, **kwargs):
    if step == 4:
      os.makedirs(os.path.join(str(self.directory), '4.orbax-checkpoint-tmp-1'))
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save_until_full)
  with mock_data(), pytest.raises(CheckpointWriteError) as error:
    train.train_and_evaluate(tiny_config(), str(tmp_path))
  message = str(error.value)
  assert 'could not write the checkpoint of step 4' in message and '\n' not in message
  assert 'No space left on device; the last intact checkpoint is step 2' in message
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '2.integrity.json']


class _StateBeforeEmaStatistics(train_state.TrainState):
  """The train state as checkpoints written before `ema_batch_stats` hold it."""
  batch_stats: Any
  ema_params: Any


def test_a_checkpoint_of_an_older_layout_resumes_with_ema_statistics_from_the_raw_ones(
    tmp_path, capsys):
  config = tiny_config()
  compiled = parallel.compile_steps(setup.build_model(config), config, 3, 4)
  state = compiled.init()
  older = _StateBeforeEmaStatistics(
      step=state.step, apply_fn=state.apply_fn, params=state.params, tx=state.tx,
      opt_state=state.opt_state, batch_stats=state.batch_stats, ema_params=state.ema_params)
  manager = checkpointing.create_manager(str(tmp_path), 3, asynchronous=False)
  checkpointing.save(manager, 2, older)
  checkpointing.finish(manager)
  restored = checkpointing.restore_latest(manager, compiled.abstract_state)
  manager.close()
  assert 'damaged' not in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '2.integrity.json']
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.ema_batch_stats),
               jax.device_get(state.batch_stats))
  images = np.zeros((8, 16, 16, 3), np.float32)
  resumed, metrics = compiled.train_step(restored, compiled.to_devices(
      {'image': images, 'label': np.zeros(8, np.int32)}))  # donates: the buffers are its own
  assert int(resumed.step) == 1 and np.isfinite(float(metrics['loss']))


def test_save_returns_without_copying_or_hashing_the_state_on_the_calling_thread(
    tmp_path, monkeypatch):
  hashed_on, copied_on = [], []
  digest, checksums = manifests.digest, manifests.checksums
  monkeypatch.setattr(manifests, 'digest', lambda path: hashed_on.append(
      threading.current_thread()) or digest(path))
  monkeypatch.setattr(manifests, 'checksums', lambda state: copied_on.append(
      threading.current_thread()) or checksums(state))
  manager = checkpointing.create_manager(str(tmp_path), 3)  # asynchronous, as training saves
  state = {'w': jnp.arange(4096.0), 'b': jnp.ones((8, 8))}
  checkpointing.save(manager, 1, state)
  main = threading.main_thread()
  assert main not in hashed_on and not copied_on  # save has returned: nothing hashed here
  checkpointing.finish(manager)
  assert hashed_on and main not in hashed_on and not copied_on
  manifest = json.loads((tmp_path / 'checkpoints' / '1.integrity.json').read_text())
  assert len(manifest['files']) == len(hashed_on) and all(len(d) == 32 for d in
                                                          manifest['files'].values())
  restored = checkpointing.restore_latest(manager, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state))
  manager.close()
  np.testing.assert_array_equal(restored['w'], state['w'])
