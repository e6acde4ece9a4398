r"""Prints a model's per-layer table (output shape, params, MAdds), totals, and its feature maps
as a backbone (`mnj.create_model(..., features_only=True)`): channels and stride per out index.

  python -m experiments.summary --config=configs/v3_large.py [--config.FIELD=VALUE ...]
  python -m experiments.summary --config=configs/v1.py --all     # the paper's width/resolution grid
  python -m experiments.summary --config=configs/v2.py --all --json

With --all, one row is printed per shipped config and grid point; --config is then optional and
only its `model.num_classes` is used (without it, each config's own: 0 for V5-300M, the encoder).
"""

import importlib
import json

from absl import flags
from ml_collections import config_flags

from experiments import cli
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.models import architecture, complexity
from mobilenet_jax.models.registry import create_model

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Model config file.')
_ALL = flags.DEFINE_bool('all', False, 'One row per shipped config over the papers\' grid.')
_JSON = flags.DEFINE_bool('json', False, 'Print JSON lines instead of tables.')

# The width multipliers and resolutions each paper reports (V2 1.3: 509M MAdds); V4 at the
# resolution each model was trained at.
PAPER_GRID = {
    'v1': [(w, 224) for w in (1.0, 0.75, 0.5, 0.25)] + [(1.0, r) for r in (192, 160, 128)],
    'v2': [(w, 224) for w in (1.4, 1.3, 1.0, 0.75, 0.5, 0.35)],
    'v3_large': [(w, 224) for w in (1.0, 0.75)],
    'v3_small': [(w, 224) for w in (1.0, 0.75)],
    'v4_conv_small': [(1.0, 224)],
    'v4_conv_medium': [(1.0, 256)],
    'v4_conv_large': [(1.0, 384)],
    'v4_hybrid_medium': [(1.0, 256)],
    'v4_hybrid_large': [(1.0, 384)],
    'v5_base': [(1.0, 256)],
    'v5_300m': [(1.0, 768)],
}


def summarize(config) -> tuple[dict, list[complexity.LayerCost]]:
  """The totals record of one config and its per-layer costs; raises ConfigError if bad."""
  model = create_model(config.model)
  architecture.check_image_size(model.architecture, config.input.image_size)
  costs = complexity.layer_costs(model, config.input.image_size)
  params, madds = complexity.totals(costs)
  record = {'config': config.name, 'width_multiplier': config.model.width_multiplier,
            'image_size': config.input.image_size, 'num_classes': config.model.num_classes,
            'params': params, 'madds': madds,
            'features': [{'index': i, 'channels': f.channels, 'stride': f.stride,
                          'block': f.layer,
                          'module': f'{model.architecture.layers[f.layer].block}_{f.layer}'}
                         for i, f in enumerate(architecture.features(model.architecture))]}
  return record, costs


def _layer_table(record: dict, costs: list[complexity.LayerCost]) -> str:
  # Wide enough for V5-300M (294M params, 435G MAdds at 768 px).
  lines = [f'{"layer":<14}{"output shape":>18}{"params":>14}{"MAdds":>18}']
  for c in costs:
    shape = 'x'.join(map(str, c.output_shape))
    lines.append(f'{c.name:<14}{shape:>18}{c.params:>14,}{c.madds:>18,}')
  lines.append(f'{"total":<14}{"":>18}{record["params"]:>14,}{record["madds"]:>18,}')
  lines.append(f'{record["config"]}: alpha {record["width_multiplier"]}, '
               f'{record["image_size"]} px, {record["params"] / 1e6:.3f}M params, '
               f'{record["madds"] / 1e6:.1f}M MAdds')
  lines.append('features_only out_indices: ' + ', '.join(
      f'{f["index"]}: {f["channels"]} ch at stride {f["stride"]} ({f["module"]})'
      for f in record['features']))
  return '\n'.join(lines)


def _grid_records(num_classes: int | None) -> list[dict]:
  records = []
  for family, grid in PAPER_GRID.items():
    for width, size in grid:
      config = importlib.import_module(f'configs.{family}').get_config()
      if num_classes is not None:
        config.model.num_classes = num_classes
      config.model.width_multiplier = width
      config.input.image_size = size
      records.append(summarize(config)[0])
  return records


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None and not _ALL.value:
    raise ConfigError('--config is required, e.g. --config=configs/v3_large.py (or --all)')
  if _ALL.value:
    records = _grid_records(config.model.num_classes if config else None)
    if _JSON.value:
      print('\n'.join(json.dumps(r) for r in records))
      return
    print(f'{"config":<12}{"alpha":>7}{"size":>6}{"params":>12}{"MAdds":>15}')
    for r in records:
      print(f'{r["config"]:<12}{r["width_multiplier"]:>7}{r["image_size"]:>6}'
            f'{r["params"]:>12,}{r["madds"]:>15,}')
    return
  record, costs = summarize(config)
  if _JSON.value:
    print(json.dumps(record))
  else:
    print(_layer_table(record, costs))


if __name__ == '__main__':
  cli.run(main)
