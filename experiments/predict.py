r"""Classifies images: the top-5 classes of each, with their names and probabilities.

  python -m experiments.predict --workdir=runs/v4s photo.png more_photos/
  python -m experiments.predict --config=configs/v4_conv_small.py \
      --init_from=timm:model.safetensors photo.jpg --json

Images are files or folders of them (read in sorted order, not recursively), preprocessed as the
model is evaluated (`input.*`), and classified in batches of --batch_size with one compiled
program (the last batch padded). Class names: a run's from its dataset (its metadata, or TFDS's
label names); ImageNet's are the synset ids TFDS ships (with their words where timm's synset file
is installed). A missing or unreadable image gets an `error: ...` line and exit status 1; the
others are still classified.
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.tools import predicting  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file of the weights of --init_from (with --workdir: the run\'s own).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A run: its latest checkpoint\'s raw weights.')
_INIT_FROM = flags.DEFINE_string('init_from', None, 'Published weights: torchvision:PATH, '
                                 'keras:PATH or timm:PATH (with --config).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Images per compiled batch.')
_TOP = flags.DEFINE_integer('top', 5, 'Classes printed per image.')
_JSON = flags.DEFINE_bool('json', False, 'One JSON object per image, a line each.')


def main(argv):
  if (_WORKDIR.value is None) == (_INIT_FROM.value is None):
    raise ConfigError('give exactly one of --workdir (a run) and --init_from (with --config)')
  if _INIT_FROM.value and _CONFIG.value is None:
    raise ConfigError('--init_from needs --config, the architecture of the weights')
  if len(argv) < 2:
    raise ConfigError('name the images to classify: image files or folders, after the flags')
  if _BATCH_SIZE.value < 1 or _TOP.value < 1:
    raise ConfigError('--batch_size and --top must be >= 1')
  predictor = predicting.Predictor.load(_CONFIG.value, _WORKDIR.value, _INIT_FROM.value,
                                        _BATCH_SIZE.value)
  failed = False
  for result in predictor.classify(predicting.image_paths(argv[1:]), _TOP.value):
    if 'error' in result:
      failed = True
      print(f'error: {result["path"]}: {result["error"]}', file=sys.stderr, flush=True)
    elif _JSON.value:
      print(json.dumps(result), flush=True)
    else:
      print(result['path'], flush=True)
      for entry in result['top']:
        print(f'  {entry["probability"]:7.2%}  {entry["class"]:>5}  {entry["name"]}', flush=True)
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  cli.run(main)
