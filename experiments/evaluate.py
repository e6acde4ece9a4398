r"""Evaluates a run's latest checkpoint (raw and EMA weights), or imported weights, on the eval
split.

  python -m experiments.evaluate --config=configs/v3_small.py:fashion_mnist --workdir=DIR
  python -m experiments.evaluate --config=configs/v3_large.py --init_from=torchvision:W.pth \
      --config.dataset=imagenet2012 --config.data_dir=...
"""

from mobilenet_jax import allocator

if __name__ == '__main__':  # before JAX and TensorFlow are loaded
  allocator.reexec_with_tcmalloc('experiments.evaluate')

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mobilenet_jax import train
from mobilenet_jax.config_errors import ConfigError
from mobilenet_jax.datasets import DatasetUnavailable

_CONFIG = config_flags.DEFINE_config_file('config', None, 'The run\'s config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The run\'s workdir.')
_INIT_FROM = flags.DEFINE_string('init_from', None, 'Evaluate these weights instead: '
                                 'torchvision:PATH.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if (_WORKDIR.value is None) == (_INIT_FROM.value is None):
    sys.exit('error: give exactly one of --workdir (a run to evaluate) and --init_from')
  try:
    if _INIT_FROM.value:
      config.init_from = _INIT_FROM.value
      step, metrics = 0, train.evaluate_imported(config)
    else:
      step, metrics = train.evaluate_latest(config, _WORKDIR.value)
  except (ConfigError, DatasetUnavailable, FileNotFoundError) as e:
    sys.exit(f'error: {e}')
  if _JSON.value:
    print(json.dumps({'step': step, 'split': config.eval_split, **metrics}))
    return
  print(f'{config.name} at step {step} on {config.dataset}/{config.eval_split}:')
  for name in ('raw', 'ema'):
    print(f'  {name:3s} weights: top-1 {metrics[f"{name}/top1"]:.4f}  '
          f'top-5 {metrics[f"{name}/top5"]:.4f}  loss {metrics[f"{name}/loss"]:.4f}')


if __name__ == '__main__':
  app.run(main)
