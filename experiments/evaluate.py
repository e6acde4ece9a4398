r"""Evaluates a run's latest checkpoint (raw and EMA weights), or imported weights, on the eval
split.

  python -m experiments.evaluate --workdir=DIR                  # the run's own config
  python -m experiments.evaluate --workdir=DIR --config=configs/v3_small.py:fashion_mnist \
      --config.eval_split=train                                 # another config for the run
  python -m experiments.evaluate --config=configs/v3_large.py --init_from=torchvision:W.pth \
      --config.dataset=imagenet2012 --config.data_dir=...
  python -m experiments.evaluate --config=configs/v4_conv_medium.py \
      --init_from=timm:model.safetensors --config.data_dir=...   # timm's eval crop, bicubic
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.train import workdir as run_dir  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file; default with --workdir: the run\'s own config.json.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The run\'s workdir.')
_INIT_FROM = flags.DEFINE_string('init_from', None, 'Evaluate these weights instead: '
                                 'torchvision:PATH, keras:PATH or timm:PATH (needs --config).')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')


def main(argv):
  del argv
  if (_WORKDIR.value is None) == (_INIT_FROM.value is None):
    raise ConfigError('give exactly one of --workdir (a run to evaluate) and --init_from')
  if _INIT_FROM.value:
    if _CONFIG.value is None:
      raise ConfigError('--init_from needs --config, the architecture of the weights')
    config = _CONFIG.value
    config.init_from = _INIT_FROM.value
    step, metrics = 0, train.evaluate_imported(config)
  else:
    config = _CONFIG.value or run_dir.read_config(_WORKDIR.value)
    step, metrics = train.evaluate_latest(_WORKDIR.value, config)
  if _JSON.value:
    print(json.dumps({'step': step, 'split': config.eval_split, **metrics}))
    return
  print(f'{config.name} at step {step} on {config.dataset}/{config.eval_split}:')
  for name in ('raw', 'ema'):
    print(f'  {name:3s} weights: top-1 {metrics[f"{name}/top1"]:.4f}  '
          f'top-5 {metrics[f"{name}/top5"]:.4f}  loss {metrics[f"{name}/loss"]:.4f}')


if __name__ == '__main__':
  cli.run(main)
