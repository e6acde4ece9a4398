r"""Evaluates a run's latest checkpoint on the eval split, with raw and EMA weights.

  python -m experiments.evaluate --config=configs/v3_small.py:fashion_mnist --workdir=DIR
"""

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mobilenet_jax import train
from mobilenet_jax.config_errors import ConfigError
from mobilenet_jax.datasets import DatasetUnavailable

_CONFIG = config_flags.DEFINE_config_file('config', None, 'The run\'s config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The run\'s workdir.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  try:
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
