r"""Images per second of the input pipeline on ImageNet-like JPEGs, beside torchvision's.

  python -m experiments.input_benchmark --repeats=3 --feed=3000 --json_out=input.json

Makes (once, cached under --data_dir) a folder of ImageNet-like JPEG files in torchvision's
`ImageFolder` layout (mobilenet_jax/tools/jpeg_set.py), then measures our train and eval
preprocessing (data/preprocessing.py, as the configs' input fields set it) and torchvision's
(`RandomResizedCrop` + flip; `Resize` + `CenterCrop`; PIL decoding, `DataLoader` workers) on
those files, each in a process pinned to 1 core and to all cores
(mobilenet_jax/tools/input_benchmarking.py). Prints a table and the cores it would take to feed
--feed train images per second; --profile adds what each stage of ours costs; --json_out writes
every figure. docs/input_pipeline.md has the
measurements and what holds them.
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import os  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax import errors  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.data import preprocessing  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.tools import input_benchmarking, jpeg_set  # pylint: disable=g-import-not-at-top,wrong-import-position

_DEFAULTS = common.get_base_config().input
_DATA_DIR = flags.DEFINE_string(
    'data_dir', os.path.join(os.path.expanduser('~'), '.cache', 'mobilenet_jax'),
    'Where the JPEG set is made once and kept.')
_IMAGES = flags.DEFINE_integer('images', 1000, 'JPEG files in the set (each read once per run).')
_CORES = flags.DEFINE_list('cores', ['1', 'all'], 'Core counts to measure at ("all": every core '
                           'this process may use).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Processes per cell; the median is reported.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Images per batch.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Output size in pixels.')
_FEED = flags.DEFINE_float('feed', 0.0, 'A train-step rate (images/s): say how many cores would '
                           'feed it.')
_PROFILE = flags.DEFINE_bool('profile', False, 'Also measure what each stage of ours costs (one '
                             'core, images per CPU-second).')
_JSON_OUT = flags.DEFINE_string('json_out', None, 'Also write every figure to this JSON file.')
_TRAIN_INTERPOLATION = flags.DEFINE_enum('train_interpolation', _DEFAULTS.train_interpolation,
                                         preprocessing.INTERPOLATIONS, 'Our Inception crop resize.')
_INTERPOLATION = flags.DEFINE_enum('interpolation', _DEFAULTS.interpolation,
                                   preprocessing.INTERPOLATIONS, 'Our eval resize.')
_EVAL_DECODE = flags.DEFINE_enum('eval_decode', _DEFAULTS.eval_decode, preprocessing.EVAL_DECODES,
                                 'What our evaluation decodes.')


def _core_counts() -> list[int]:
  available = len(os.sched_getaffinity(0))
  counts = []
  for value in _CORES.value:
    count = available if value == 'all' else int(value) if value.isdigit() else 0
    if not 1 <= count <= available:
      raise errors.ConfigError(f'--cores={",".join(_CORES.value)} is not allowed; each must be '
                               f'"all" or a number from 1 to the {available} cores available')
    counts.append(count)
  return sorted(set(counts))


def _check_flags() -> None:
  errors.check_int('--images', _IMAGES.value, minimum=1)
  errors.check_int('--repeats', _REPEATS.value, minimum=1)
  errors.check_int('--batch', _BATCH.value, minimum=1)
  errors.check_int('--image_size', _IMAGE_SIZE.value, minimum=1)
  errors.check_positive('--feed', _FEED.value, allow_zero=True)
  warm_up = input_benchmarking.WARMUP_BATCHES * _BATCH.value
  if _IMAGES.value <= warm_up:
    raise errors.ConfigError(f'--images={_IMAGES.value} is not allowed; it must be more than the '
                             f'{warm_up} images of the warm-up ({input_benchmarking.WARMUP_BATCHES}'
                             ' batches)')


def _table(result: dict, num_images: int) -> str:
  cells = {(c['split'], c['cores'], c['pipeline']): c for c in result['cells']}
  ratios = {(r['split'], r['cores']): r['ours_over_torchvision'] for r in result['ratios']}
  lines = [f"{num_images} JPEGs of ~500x375 at {result['image_size']} px, batch "
           f"{result['batch']}, median of {result['repeats']}; {result['cpu']}",
           f"{'images/s':14} {'ours':>7} {'torchvision':>12} {'ratio':>6}   "
           f"{'per core: ours':>14} {'torchvision':>12}   {'per CPU-s: ours':>15} "
           f"{'torchvision':>12}"]
  for split, cores in sorted({(s, c) for s, c, _ in cells}, key=lambda k: (k[0] != 'train', k)):
    ours, theirs = cells[(split, cores, 'ours')], cells[(split, cores, 'torchvision')]
    lines.append(
        f"{f'{split}, {cores} core' + 's' * (cores > 1):14} {ours['images_per_second']:>7.0f} "
        f"{theirs['images_per_second']:>12.0f} {ratios[(split, cores)]:>5.2f}x   "
        f"{ours['images_per_second_per_core']:>14.0f} "
        f"{theirs['images_per_second_per_core']:>12.0f}   "
        f"{ours['images_per_cpu_second']:>15.0f} {theirs['images_per_cpu_second']:>12.0f}")
  if 'feed' in result:
    feed = result['feed']
    lines.append(f"to feed {feed['rate']:g} train images/s: ours {feed['cores']['ours']:.1f} "
                 f"cores, torchvision {feed['cores']['torchvision']:.1f}")
  return '\n'.join(lines)


def main(argv):
  del argv
  _check_flags()
  core_counts = _core_counts()
  recipe = f'jpeg_set_{_IMAGES.value}'
  folder = os.path.join(_DATA_DIR.value, recipe)
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise errors.ConfigError(f'--data_dir={_DATA_DIR.value} cannot be written: {e.strerror}')
  print(f'JPEG set: {folder} (made once)', flush=True)
  jpeg_set.write(folder, _IMAGES.value)
  fields = {'train_interpolation': _TRAIN_INTERPOLATION.value,
            'interpolation': _INTERPOLATION.value, 'eval_decode': _EVAL_DECODE.value,
            'crop_fraction': _DEFAULTS.crop_fraction}
  result = input_benchmarking.benchmark(
      folder, core_counts=core_counts, repeats=_REPEATS.value, batch=_BATCH.value,
      size=_IMAGE_SIZE.value, fields=fields)
  result['num_images'] = _IMAGES.value
  if _FEED.value:
    result['feed'] = {'rate': _FEED.value,
                      'cores': input_benchmarking.cores_to_feed(result['cells'], _FEED.value)}
  print(_table(result, _IMAGES.value), flush=True)
  if _PROFILE.value:
    result['profile'] = input_benchmarking.profile_in_process(folder, _IMAGE_SIZE.value)
    print('ours, stage by stage (1 core, images per CPU-second):', flush=True)
    for stage, rate in result['profile'].items():
      print(f'  {stage:40} {rate:7.0f}', flush=True)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  cli.run(main)
