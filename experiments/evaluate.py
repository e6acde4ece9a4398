r"""Evaluates a run's latest checkpoint (raw and EMA weights), or imported weights, on the eval
split.

  python -m experiments.evaluate --workdir=DIR                  # the run's own config
  python -m experiments.evaluate --workdir=DIR --flip           # + each image's mirror image
  python -m experiments.evaluate --workdir=DIR --config=configs/v3_small.py:fashion_mnist \
      --config.eval_split=train                                 # another config for the run
  python -m experiments.evaluate --config=configs/v3_large.py --init_from=torchvision:W.pth \
      --config.dataset=imagenet2012 --config.data_dir=...
  python -m experiments.evaluate --config=configs/v4_conv_medium.py \
      --init_from=timm:model.safetensors --config.data_dir=...   # timm's eval crop, bicubic
  python -m experiments.evaluate --init_from=timm:model.safetensors  # the family found from the
                                                                      # weights, ImageNet in TFDS
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import importlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import json  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.interop import pretrained  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.interop.sources import SOURCES  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.models import registry  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.train import steps  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.train import workdir as run_dir  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file; default with --workdir: the run\'s own config.json.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The run\'s workdir.')
_INIT_FROM = flags.DEFINE_string('init_from', None, 'Evaluate these weights instead: '
                                 'torchvision:PATH, keras:PATH or timm:PATH (needs --config, '
                                 'except timm weights of a width-1.0 config here).')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
_FLIP = flags.DEFINE_bool('flip', None, 'Also evaluate with each image\'s mirror image, the '
                          'logits averaged (config.eval_flip); default: the config\'s setting.')


def config_of_timm_weights(init_from: str):
  """The shipped config whose architecture timm's weights fit (width 1.0), with the fields those
  weights need set; raises ConfigError when none does."""
  for family in SOURCES['timm'].builders:
    config = importlib.import_module(f'configs.{family}').get_config()
    config.init_from = init_from
    pretrained.configure(config)
    try:
      pretrained.read(config, registry.create_model(config.model))
    except ConfigError:
      continue
    print(f'init_from: the weights fit configs/{family}.py', flush=True)
    return config
  raise ConfigError(f'--init_from={init_from}: the weights fit none of the shipped configs at '
                    'width 1.0; give --config (and --config.model.width_multiplier)')


def main(argv):
  del argv
  if (_WORKDIR.value is None) == (_INIT_FROM.value is None):
    raise ConfigError('give exactly one of --workdir (a run to evaluate) and --init_from')
  if _INIT_FROM.value:
    if _CONFIG.value is not None:
      config = _CONFIG.value
      config.init_from = _INIT_FROM.value
    elif _INIT_FROM.value.startswith('timm:'):
      config = config_of_timm_weights(_INIT_FROM.value)
    else:
      raise ConfigError('--init_from needs --config, the architecture of the weights (timm '
                        'weights of width 1.0 are recognized without)')
  else:
    config = _CONFIG.value or run_dir.read_config(_WORKDIR.value)
  if _FLIP.value is not None:
    config.eval_flip = _FLIP.value
  if _INIT_FROM.value:
    step, metrics = 0, train.evaluate_imported(config)
  else:
    step, metrics = train.evaluate_latest(_WORKDIR.value, config)
  if _JSON.value:
    print(json.dumps({'step': step, 'split': config.eval_split, **metrics}))
    return
  print(f'{config.name} at step {step} on {config.dataset}/{config.eval_split}:')
  for name, label in steps.VIEWS.items():
    if f'{name}/top1' not in metrics:
      continue
    print(f'  {label:13s}: top-1 {metrics[f"{name}/top1"]:.4f}  '
          f'top-5 {metrics[f"{name}/top5"]:.4f}  loss {metrics[f"{name}/loss"]:.4f}')
  print(f'  dead batch-norm channels (running variance under {steps.DEAD_VARIANCE:g}): '
        f'{metrics["raw/dead_channels"]} (EMA {metrics["ema/dead_channels"]})')


if __name__ == '__main__':
  cli.run(main)
