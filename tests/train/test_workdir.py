"""The run directory: its files' names, the config it holds, and what its files say."""

import json
import os
import subprocess
import sys

import pytest

from mobilenet_jax.errors import ConfigError, MissingRun, WorkdirInUse
from mobilenet_jax.train import workdir as run_dir
from tests.train_fixtures import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_state_follows_the_files(tmp_path):
  workdir = str(tmp_path)
  assert run_dir.state(workdir) == 'pending'
  run_dir.save_config(workdir, tiny_config())
  assert run_dir.state(workdir) == 'started'
  run_dir.write_results(workdir, {'top1': 0.5})
  assert run_dir.state(workdir) == 'finished' and run_dir.read_results(workdir) == {'top1': 0.5}
  run_dir.write_json(os.path.join(workdir, run_dir.FAILURE_FILE), {'error': 'x'})
  assert run_dir.state(workdir) == 'failed'


def test_config_round_trip_and_a_missing_run(tmp_path):
  with pytest.raises(MissingRun, match='holds no run'):
    run_dir.read_config(str(tmp_path))
  config = tiny_config()
  run_dir.save_config(str(tmp_path), config)
  saved = run_dir.read_config(str(tmp_path))
  assert saved.family == 'v3_small' and saved.model.num_classes == config.model.num_classes
  assert run_dir.check_config(str(tmp_path), config)


def test_a_config_written_before_fields_were_added_reads_with_their_old_meaning(tmp_path):
  config = tiny_config()
  run_dir.save_config(str(tmp_path), config)
  path = tmp_path / run_dir.CONFIG_FILE
  written = json.loads(path.read_text())
  for dotted in run_dir.ADDED_FIELDS:
    *parents, name = dotted.split('.')
    section = written
    for parent in parents:
      section = section[parent]
    del section[name]
  written['input']['shuffle_buffer'] = 16_384  # a field removed since (REMOVED_FIELDS)
  path.write_text(json.dumps(written))
  old = run_dir.read_config(str(tmp_path))
  assert 'shuffle_buffer' not in old.input
  assert old.model.scale_stem and old.input.randaugment_layers == 0
  assert old.body_learning_rate_scale == 1.0
  # The values filled in are today's defaults, but for the resizes, whose defaults changed
  # when the JPEG windows came, and the mixing pairs, grouped since (an older run resumed today
  # is told so).
  assert run_dir.changed_fields(str(tmp_path), config) == [
      'input.eval_decode', 'input.interpolation', 'input.mix_group_size',
      'input.train_interpolation']
  old.input.update(interpolation='area', train_interpolation='area', eval_decode='window',
                   mix_group_size=8)
  run_dir.save_config(str(tmp_path), old)
  config.input.mixup_alpha = 0.2
  assert run_dir.changed_fields(str(tmp_path), config) == ['input.mixup_alpha']


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint(tmp_path):
  with open(tmp_path / run_dir.METRICS_FILE, 'w') as f:
    f.writelines(f'{{"step": {s}, "train_loss": 1.0}}\n' for s in (1, 2, 3, 4))
  run_dir.truncate_metrics(str(tmp_path), 2)
  assert [r['step'] for r in run_dir.read_metrics(str(tmp_path))] == [1, 2]


def test_training_time_before_a_resume_is_the_last_logged_at_or_before_its_step(tmp_path):
  workdir = str(tmp_path)
  assert run_dir.train_seconds_until(workdir, 0) == 0.0  # a fresh run
  with open(os.path.join(workdir, run_dir.METRICS_FILE), 'w') as f:
    for record in ({'step': 50, 'train_seconds': 10.0}, {'step': 60, 'eval_raw/top1': 0.5},
                   {'step': 100, 'train_seconds': 22.0}, {'step': 150, 'train_seconds': 31.0}):
      f.write(json.dumps(record) + '\n')
  assert run_dir.train_seconds_until(workdir, 120) == 22.0
  assert run_dir.train_seconds_until(workdir, 150) == 31.0
  # A run logged before the lines carried the total: results.json's, if it finished once.
  os.remove(os.path.join(workdir, run_dir.METRICS_FILE))
  run_dir.write_results(workdir, {'train_seconds': 7.5})
  assert run_dir.train_seconds_until(workdir, 100) == 7.5


def test_a_workdir_that_cannot_be_written_is_refused(tmp_path):
  (tmp_path / 'file').write_text('')
  run_dir.check_writable(str(tmp_path / 'new' / 'run'))  # made when the run starts
  with pytest.raises(ConfigError, match='is a file; give a folder'):
    run_dir.check_writable(str(tmp_path / 'file'))
  with pytest.raises(ConfigError, match='cannot be made: .* is a file'):
    run_dir.check_writable(str(tmp_path / 'file' / 'run'))


def test_one_trainer_per_workdir_and_a_dead_holder_leaves_no_lock(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from mobilenet_jax.train import workdir; '
       'lock = workdir.locked(sys.argv[1]); lock.__enter__(); print("held", flush=True); '
       'time.sleep(60)', str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
  assert holder.stdout.readline().strip() == 'held'
  with pytest.raises(WorkdirInUse, match=f'is in use by process {holder.pid}, which trains'):
    with run_dir.locked(str(tmp_path)):
      pass
  holder.kill()
  holder.wait()
  with run_dir.locked(str(tmp_path)):  # taken over from the dead process
    assert (tmp_path / run_dir.LOCK_FILE).read_text().strip() == str(os.getpid())
