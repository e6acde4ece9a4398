"""Sweep expansion and naming, running (skip, resume, failure) and the report."""

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from mobilenet_jax.tools import hyper, reporting, sweeps
from mobilenet_jax.train import workdir as run_dir
from mobilenet_jax.errors import ConfigError

FAKE = 'tests.fake_trainer'
CONFIG = 'configs/v3_small.py:fashion_mnist'


def test_product_zip_chain():
  grid = hyper.product(hyper.sweep('learning_rate', [1, 2]), hyper.sweep('weight_decay', [3, 4]))
  assert grid == [{'learning_rate': 1, 'weight_decay': 3}, {'learning_rate': 1, 'weight_decay': 4},
                  {'learning_rate': 2, 'weight_decay': 3}, {'learning_rate': 2, 'weight_decay': 4}]
  assert hyper.zipped(hyper.sweep('a', [1, 2]), hyper.sweep('b', [3, 4])) == [
      {'a': 1, 'b': 3}, {'a': 2, 'b': 4}]
  assert hyper.chain(hyper.fixed(model__dropout_rate=0.1), hyper.sweep('a', [1])) == [
      {'model.dropout_rate': 0.1}, {'a': 1}]
  with pytest.raises(ValueError, match='equal lengths'):
    hyper.zipped(hyper.sweep('a', [1, 2]), hyper.sweep('b', [3]))
  with pytest.raises(ValueError, match='set a twice'):
    hyper.product(hyper.sweep('a', [1]), hyper.sweep('a', [2]))


def test_width_sweep_runs_and_names(tmp_path):
  runs = sweeps.expand(CONFIG, sweeps.load_sweep('configs/sweeps/width_multiplier.py'),
                       ['--config.num_train_steps=100'], str(tmp_path))
  assert [r.name for r in runs] == [f'width_multiplier={w}'
                                    for w in (0.35, 0.5, 0.75, 1.0, 1.25)]
  assert runs[0].workdir == str(tmp_path / 'width_multiplier=0.35')
  assert runs[0].command() == [
      'python', '-m', 'experiments.train', f'--config={CONFIG}',
      f'--workdir={tmp_path}/width_multiplier=0.35', '--config.num_train_steps=100',
      '--config.model.width_multiplier=0.35']


def test_family_sweep_sets_the_config_per_run(tmp_path):
  runs = sweeps.expand(CONFIG, sweeps.load_sweep('configs/sweeps/width_multiplier.py:families'),
                       [], str(tmp_path))
  assert len(runs) == 20 and len({r.name for r in runs}) == 20
  assert runs[0].name == 'v1,width_multiplier=0.35'
  assert runs[0].command()[3] == '--config=configs/v1.py:fashion_mnist'


def test_names_of_ambiguous_fields_and_repeats(tmp_path):
  overrides = [{'model.dropout_rate': 0.1, 'dropout_rate': 0.2}, {'seed': 1}, {'seed': 1}]
  names = [r.name for r in sweeps.expand(CONFIG, overrides, [], str(tmp_path))]
  assert names == ['model.dropout_rate=0.1,dropout_rate=0.2', 'seed=1,1', 'seed=1,2']


def test_bad_sweep_input_is_one_clear_error(tmp_path):
  with pytest.raises(ConfigError, match='the sweep varies model.width_multiplier'):
    sweeps.expand(CONFIG, [{'model.width_multiplier': 0.5}],
                  ['--config.model.width_multiplier=1.0'], str(tmp_path))
  with pytest.raises(ConfigError, match='no file'):
    sweeps.load_sweep('configs/sweeps/nope.py')


def test_dry_run_prints_a_command_per_run(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.sweep', f'--config={CONFIG}',
       '--sweep=configs/sweeps/resolution.py:small', f'--workdir={tmp_path}', '--dry_run',
       '--config.num_train_steps=50'],
      capture_output=True, text=True, check=True, cwd=sweeps.REPO_ROOT).stdout.splitlines()
  assert len(out) == 4
  assert out[0] == (f'python -m experiments.train --config={CONFIG} '
                    f'--workdir={tmp_path}/image_size=20 --config.num_train_steps=50 '
                    '--config.input.image_size=20')
  assert not os.listdir(tmp_path)  # nothing written


@pytest.fixture(scope='module')
def finished_sweep(tmp_path_factory):
  """A sweep run twice with the fake trainer: 2 good runs, 1 killed then resumed, 1 failing."""
  workdir = str(tmp_path_factory.mktemp('sweep'))
  overrides = [{'model.width_multiplier': 0.5}, {'model.width_multiplier': 1.0},
               {'model.width_multiplier': 0.75, 'seed': 13},
               {'model.width_multiplier': 0.75, 'learning_rate': -1}]
  runs = sweeps.expand(CONFIG, overrides, [], workdir)
  sweeps.write_manifest(workdir, runs, FAKE)
  lines = []
  first = sweeps.run_all(runs, parallel=2, trainer=FAKE, report=lines.append)
  second = sweeps.run_all(runs, parallel=1, trainer=FAKE, report=lines.append)
  return workdir, runs, first, second, lines


def _invocations(run):
  with open(os.path.join(run.workdir, 'invocations.txt')) as f:
    return len(f.readlines())


def test_failures_are_recorded_and_the_rest_completes(finished_sweep):
  _, runs, first, _, _ = finished_sweep
  assert first == {runs[0].name: 'finished', runs[1].name: 'finished',
                   runs[2].name: 'failed', runs[3].name: 'failed'}
  with open(os.path.join(runs[3].workdir, run_dir.FAILURE_FILE)) as f:
    assert json.load(f)['error'] == 'error: learning_rate=-1.0 is not allowed; it must be >= 0'


def test_second_call_skips_finished_and_resumes_the_killed(finished_sweep):
  _, runs, _, second, lines = finished_sweep
  assert second[runs[0].name] == second[runs[1].name] == second[runs[2].name] == 'finished'
  assert second[runs[3].name] == 'failed'
  assert [_invocations(r) for r in runs] == [1, 1, 2, 2]
  assert f'{runs[0].name}: finished, skipped' in lines
  assert not os.path.exists(os.path.join(runs[2].workdir, run_dir.FAILURE_FILE))


def test_a_changed_command_reruns_a_finished_run(finished_sweep, tmp_path):
  _, runs, _, _, _ = finished_sweep
  longer = sweeps.expand(CONFIG, [runs[0].overrides], ['--config.num_train_steps=8'],
                         os.path.dirname(runs[0].workdir))[0]
  assert sweeps.status(runs[0], FAKE) == 'finished'
  assert sweeps.status(longer, FAKE) == 'interrupted'


def test_report_tables_equal_the_runs(finished_sweep):
  workdir, runs, _, _, _ = finished_sweep
  paths = reporting.write_report(workdir)
  assert [os.path.basename(p) for p in paths] == [
      'results.csv', 'results.md', 'pareto.png', 'time.png', 'curves.png']
  for path in paths:
    assert os.path.getsize(path) > 0
  with open(paths[0]) as f:
    rows = {row['run']: row for row in csv.DictReader(f)}
  assert list(rows) == [r.name for r in runs]
  good = rows['width_multiplier=0.5']
  assert (good['family'], int(good['params']), int(good['madds'])) == ('v3_small', 500_000,
                                                                       1_250_000)
  assert float(good['top1']) == pytest.approx(0.85)
  assert float(good['images_per_second']) == pytest.approx(2000.0)
  assert good['status'] == 'finished' and good['overrides'] == 'model.width_multiplier=0.5'
  assert rows['width_multiplier=0.75,learning_rate=-1']['status'] == 'failed'
  with open(paths[1]) as f:
    table = f.read()
  assert '| width_multiplier=0.5 | v3_small | model.width_multiplier=0.5 | 0.500M | 1.2M | 85.00 |' in table
  assert 'failed: error: learning_rate=-1.0 is not allowed' in table
  # time.png: each finished run's top-1 at its training time, in order of time.
  results = [run_dir.read_results(r.workdir) for r in runs]
  want = sorted((r['train_seconds'] / 60, 100 * r['top1']) for r in results if r)
  points = reporting.family_points(reporting.collect(workdir), reporting.train_minutes)
  assert len(want) == 3 and [x for x, _, _ in points['v3_small']] == [x for x, _ in want]
  assert [y for _, y, _ in points['v3_small']] == pytest.approx([y for _, y in want])


def test_report_of_a_run_in_progress(tmp_path):
  """Params and MAdds from the saved config, top-1 from the last evaluation so far."""
  workdir = tmp_path / 'width_multiplier=0.5'
  subprocess.run([sys.executable, '-c', 'import os, signal, sys; from tests import fake_trainer; '
                  "fake_trainer.main(['', f'--workdir={sys.argv[1]}', '--config=" + CONFIG + "', "
                  "'--config.model.width_multiplier=0.5', '--config.seed=13'])", str(workdir)],
                 cwd=sweeps.REPO_ROOT, check=False)
  rows = reporting.collect(str(tmp_path))
  assert len(rows) == 1 and rows[0]['status'] == 'unfinished'
  assert rows[0]['top1'] == 0.5 and rows[0]['family'] == 'v3_small'
  assert rows[0]['params'] > 0 and rows[0]['madds'] > 0
  reporting.write_report(str(tmp_path))
  assert (tmp_path / 'pareto.png').stat().st_size > 0


def test_a_traceback_is_recorded_by_its_exception_line(tmp_path):
  [run] = sweeps.expand(CONFIG, [{'seed': 22}], [], str(tmp_path))
  result = sweeps.execute(run, trainer=FAKE)
  assert result['status'] == 'failed'
  assert result['error'] == 'RuntimeError: the step failed:'


def _gone(pid: int) -> bool:
  """Exited: no process, or a zombie nobody reaped (PID 1 of a container may not)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] in 'ZX'
  except FileNotFoundError:
    return True


def test_runs_die_with_a_killed_sweep(tmp_path):
  sweep = subprocess.Popen(
      [sys.executable, '-c', 'import sys; from mobilenet_jax.tools import sweeps; '
       f'sweeps.run_all(sweeps.expand({CONFIG!r}, [{{"seed": 21}}], [], sys.argv[1]), '
       f'trainer={FAKE!r})', str(tmp_path)], cwd=sweeps.REPO_ROOT)
  pid_file = tmp_path / 'seed=21' / 'pid'
  deadline = time.time() + 60
  while not pid_file.exists() and time.time() < deadline:
    time.sleep(0.1)
  child = int(pid_file.read_text())
  sweep.kill()
  sweep.wait()
  deadline = time.time() + 20
  while not _gone(child) and time.time() < deadline:
    time.sleep(0.1)
  assert _gone(child)
