"""The input benchmark: its JPEG set, and one tiny run end to end (it measures, never asserts
speed)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mobilenet_jax.tools import jpeg_set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_jpeg_set_is_made_once_the_same_every_time_of_the_sizes_asked(tmp_path):
  first = jpeg_set.write(str(tmp_path / 'a'), 6, num_classes=3)
  again = jpeg_set.write(str(tmp_path / 'b'), 6, num_classes=3)
  for path, other in zip(first, again):
    with open(path, 'rb') as f, open(other, 'rb') as g:
      assert f.read() == g.read()
  assert sorted(os.listdir(tmp_path / 'a')) == ['class_000', 'class_001', 'class_002',
                                                jpeg_set.DONE_FILE]
  made = os.path.getmtime(first[0])
  assert jpeg_set.write(str(tmp_path / 'a'), 6, num_classes=3) == first
  assert os.path.getmtime(first[0]) == made  # kept, not made again
  for i, path in enumerate(first):
    picture = Image.open(path)
    height, width = jpeg_set.image_size(np.random.default_rng([0, i]))
    assert picture.format == 'JPEG' and picture.size == (width, height)
    assert 450 <= max(height, width) <= 520 and 0.65 <= min(height, width) / max(
        height, width) <= 0.81
    pixels = np.asarray(picture.convert('L'), np.float32)
    # Like a photograph: varied, but neighbouring pixels alike (white noise would not be).
    assert pixels.std() > 20
    assert np.corrcoef(pixels[:, 1:].ravel(), pixels[:, :-1].ravel())[0, 1] > 0.8


def _run(*flags):
  env = {**os.environ, 'MOBILENET_JAX_MALLOC': 'system', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  return subprocess.run([sys.executable, '-m', 'experiments.input_benchmark', *flags], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


# A whole benchmark run (both pipelines, every cell) in subprocesses: slow. The JPEG set it
# reads and its one-line errors are the default run's.
@pytest.mark.slow
def test_the_benchmark_measures_every_cell_beside_torchvision(tmp_path):
  out = tmp_path / 'input.json'
  done = _run(f'--data_dir={tmp_path}', '--images=12', '--batch=4', '--repeats=1', '--cores=1',
              '--image_size=32', '--feed=1000', f'--json_out={out}')
  assert done.returncode == 0, done.stderr
  assert 'torchvision' in done.stdout and 'to feed 1000 train images/s' in done.stdout
  result = json.loads(out.read_text())
  cells = {(c['split'], c['cores'], c['pipeline']): c for c in result['cells']}
  assert set(cells) == {(split, 1, pipeline) for split in ('train', 'eval')
                        for pipeline in ('ours', 'torchvision')}
  for cell in cells.values():
    assert len(cell['runs']) == 1 and cell['images_per_second'] > 0
    assert cell['images_per_cpu_second'] > 0
    assert cell['images_per_second_per_core'] == cell['images_per_second']
  assert {r['split'] for r in result['ratios']} == {'train', 'eval'}
  assert all(r['ours_over_torchvision'] > 0 for r in result['ratios'])
  assert set(result['feed']['cores']) == {'ours', 'torchvision'}
  assert result['fields']['train_interpolation'] == 'area' and result['cores_available'] >= 1


@pytest.mark.slow
def test_the_profile_costs_every_stage(tmp_path):
  out = tmp_path / 'input.json'
  done = _run(f'--data_dir={tmp_path}', '--images=12', '--batch=4', '--repeats=1', '--cores=1',
              '--image_size=32', '--profile', f'--json_out={out}')
  assert done.returncode == 0, done.stderr
  profile = json.loads(out.read_text())['profile']
  assert {'decode whole image', 'decode train window', 'train: window, area',
          'eval: full, bilinear'} <= set(profile)
  assert all(rate > 0 for rate in profile.values())


def test_a_core_count_beyond_the_machine_is_one_line(tmp_path):
  done = _run(f'--data_dir={tmp_path}', '--cores=1,4096')
  assert done.returncode == 1 and done.stderr.strip().splitlines() == [
      f'error: --cores=1,4096 is not allowed; each must be "all" or a number from 1 to the '
      f'{len(os.sched_getaffinity(0))} cores available']
  assert not os.listdir(tmp_path)  # nothing made
