"""Every user error of an entry point is one `error: ...` line on stderr, exit status 1."""

import os
import subprocess
import sys
from concurrent import futures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
  env = {**os.environ, 'MOBILENET_JAX_MALLOC': 'system', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  return subprocess.run([sys.executable, '-m', *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=120)


CASES = [
    (('experiments.summary', '--config=configs/nope.py'),
     'error: --config=configs/nope.py: no such config file'),
    (('experiments.summary', '--config=configs/v3_small.py:bogus'),
     "error: flag --config=configs/v3_small.py:bogus: config variant 'bogus' is not allowed for "
     'v3_small; choose from: minimalistic, small_image, fashion_mnist'),
    (('experiments.summary', '--config=configs/v3_small.py', '--config.model.widht_multiplier=2'),
     'error: --config.model.widht_multiplier: the config has no such field. Did you mean '
     '"width_multiplier" instead of "widht_multiplier"?'),
    (('experiments.summary', '--config=configs/v3_small.py', '--config.model.dropout_rate=abc'),
     "error: flag --config.model.dropout_rate=abc: could not convert string to float: 'abc'"),
    (('experiments.summary', '--config=configs/v3_small.py', '--config.model.padding=valid'),
     "error: model.padding='valid' is not allowed; choose one of: 'symmetric', 'same'"),
    (('experiments.summary',), 'error: --config is required'),
    (('experiments.evaluate', '--workdir=/nonexistent/run'),
     'error: --workdir=/nonexistent/run holds no run'),
    (('experiments.export', '--workdir=/nonexistent/run', '--format=onnx'),
     "error: flag --format=onnx: value should be one of <tflite|saved_model>"),
    (('experiments.train', '--config=configs/v3_small.py', '--workdir=README.md/run'),
     'error: --workdir=README.md/run cannot be made: '),
    (('experiments.train', '--config=configs/v3_small.py'),
     'error: flag --workdir=None: Flag --workdir must have a value other than None.'),
    (('experiments.report', '--workdir=/nonexistent/sweep'),
     'error: --workdir=/nonexistent/sweep is not a folder'),
    (('experiments.train', '--config=configs/v3_small.py', '--workdir=/nonexistent/run',
      '--config.dataset=a/b:c'),
     "error: dataset='a/b:c' cannot be parsed; give a TFDS name"),
    (('experiments.train', '--config=configs/v3_small.py', '--workdir=/nonexistent/run',
      '--config.dataset=folder:/nonexistent/images'),
     'error: dataset=folder:/nonexistent/images: no such folder'),
    # An override of a section or field the config does not have: the nearest name, or the
    # names there when none is near.
    (('experiments.train', '--config=configs/v3_small.py', '--workdir=/nonexistent/run',
      '--config.inptu.image_size=32'),
     'error: --config.inptu.image_size: the config has no such section. Did you mean "input" '
     'instead of "inptu"?'),
    (('experiments.train', '--config=configs/v3_small.py', '--workdir=/nonexistent/run',
      '--config.distil.alpha=0.5'),
     'error: --config.distil.alpha: the config has no such section. Did you mean "distill" '
     'instead of "distil"?'),
    (('experiments.summary', '--config=configs/v3_small.py', '--config.model.dropuot_rate=0.5'),
     'error: --config.model.dropuot_rate: the config has no such field. Did you mean '
     '"dropout_rate" instead of "dropuot_rate"?'),
    (('experiments.summary', '--config=configs/v3_small.py', '--config.model.foo=1'),
     'error: --config.model.foo: the config has no such field; the fields of config.model are: '
     'blocks, bn_epsilon, '),
    (('experiments.summary', '--config=configs/v3_small.py', '--config.batch_size.x=1'),
     'error: --config.batch_size.x: batch_size is a field, not a section'),

]


def test_one_line_and_exit_status_1():
  # The entry points run concurrently: each is seconds of imports and no work.
  with futures.ThreadPoolExecutor(4) as pool:
    done = list(pool.map(lambda case: _run(*case[0]), CASES))
  for (args, message), result in zip(CASES, done):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, (args, result.stderr)
    assert lines[0].startswith(message), (args, lines[0])


def test_a_preempted_run_says_so_in_one_line_and_exits_as_the_signal_would():
  code = ('from experiments import cli\n'
          'from mobilenet_jax.errors import Preempted\n'
          'def main(argv):\n'
          '  raise Preempted("stopped by SIGTERM at step 3; rerun the same command to resume", 15)\n'
          'cli.run(main)\n')
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
  assert done.returncode == 143
  assert done.stderr.strip() == 'stopped by SIGTERM at step 3; rerun the same command to resume'


def test_a_bad_folder_or_split_gets_one_line_and_nothing_is_written(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for name in ('cat', 'dog'):
    (tmp_path / 'images' / name).mkdir(parents=True)
    for i in range(2):
      Image.new('RGB', (8, 8)).save(tmp_path / 'images' / name / f'{i}.png')
  (tmp_path / 'images' / 'dog' / 'notes.txt').write_text('not an image')
  train = ('experiments.train', '--config=configs/v3_small.py', f'--workdir={tmp_path}/run',
           f'--config.data_dir={tmp_path}/tfds')
  cases = [
      (f'--config.dataset=folder:{tmp_path}/images', '--config.eval_split=tset',
       f"error: eval_split='tset' is not a split of folder:{tmp_path}/images; it has: train, "
       'validation'),
      (f'--config.dataset=folder:{tmp_path}/images', '--config.eval_split=validation',
       f"error: dataset=folder:{tmp_path}/images: 1 files are not images TensorFlow decodes "
       f"(JPEG/PNG/GIF/BMP), the first '{tmp_path}/images/dog/notes.txt'"),
  ]
  with futures.ThreadPoolExecutor(2) as pool:
    done = list(pool.map(lambda case: _run(*train, *case[:2]), cases))
  for (*args, message), result in zip(cases, done):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, (args, result.stderr)
    assert lines[0].startswith(message), (args, lines[0])
  assert os.listdir(tmp_path) == ['images']  # no workdir, no data_dir
