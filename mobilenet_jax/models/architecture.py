"""Architecture tables: validation, repeats and the width multiplier, all in one place, in plain
Python (no JAX), so that configs, checks and sweeps can resolve a table cheaply.

A table is a sequence of rows with the fields of `ROW_FIELDS`, read like the papers' tables:

  block       'conv' (conv-BN-act), 'ds' (depthwise separable, V1) or 'ir' (inverted residual, V2/V3)
  kernel      spatial kernel size (odd)
  expansion   'ir' only: the expanded width, as a ratio of the input width (V2's t) or in channels
              at width multiplier 1 (V3's exp size), as `model.expansion_unit` says; None for
              the other blocks
  out         output channels at width multiplier 1
  se          'ir' only: squeeze-and-excite after the depthwise conv
  activation  one of `ACTIVATIONS` (the 'ir' projection is always linear)
  stride      1 or 2, for the first repeat
  repeats     how many times the row is stacked (later repeats have stride 1)

`resolve` turns a table into `Layer`s with absolute widths. Width rules (those of the reference
implementations): every output width is `make_divisible(width * alpha)`, except the width that
feeds the classifier when a head layer produces it (the post-pooling head conv, or a final 1x1
'conv' row), which is scaled by max(alpha, 1): shrinking the network keeps its 1280 (or 1024)
features. An expanded width keeps its ratio to the block's input width: `round(in * t)` for
ratios, `make_divisible(in * exp / in_at_alpha_1)` for channels (TF-slim and Keras, whose V3
figures at alpha 0.75 the paper reports; torchvision ships alpha 1 only, where all rules agree).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

from mobilenet_jax import errors
from mobilenet_jax.errors import ConfigError

ROW_FIELDS = ('block', 'kernel', 'expansion', 'out', 'se', 'activation', 'stride', 'repeats')
BLOCK_TYPES = ('conv', 'ds', 'ir')
EXPANSION_UNITS = ('ratio', 'channels')
# The activation names a table may use; `layers.ACTIVATIONS` holds their functions. Kept here so
# that tables resolve in plain Python, without importing JAX.
ACTIVATIONS = ('relu', 'relu6', 'hard_swish', 'hard_sigmoid')


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
  """Rounds a channel count to the nearest multiple of `divisor`, never below 90% of `value`."""
  min_value = divisor if min_value is None else min_value
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


@dataclasses.dataclass(frozen=True)
class Layer:
  """One block of the network with absolute widths (one repeat of one table row)."""
  block: str
  kernel: int
  in_width: int
  expanded: int      # 'ir' only, else 0
  out: int
  se_width: int      # 0 when the block has no squeeze-and-excite
  activation: str
  stride: int


@dataclasses.dataclass(frozen=True)
class Architecture:
  layers: tuple[Layer, ...]
  head_width: int    # the 1x1 conv (no BN) after pooling; 0 when there is none
  head_activation: str

  @property
  def total_stride(self) -> int:
    stride = 1
    for layer in self.layers:
      stride *= layer.stride
    return stride

  @property
  def min_image_size(self) -> int:
    # The smallest input whose last feature map still has a pixel without relying on padding:
    # 32 for the published tables, less for the small-image variants with fewer stride-2 rows.
    return self.total_stride


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_row(field: str, row: Any, expansion_unit: str) -> dict[str, Any]:
  if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != len(ROW_FIELDS):
    raise ConfigError(f'{field}={row!r} is malformed; a row has {len(ROW_FIELDS)} fields: '
                      + ', '.join(ROW_FIELDS))
  r = dict(zip(ROW_FIELDS, row))
  errors.check_choice(f'{field}.block', r['block'], BLOCK_TYPES)
  if not _is_int(r['kernel']) or r['kernel'] < 1 or r['kernel'] % 2 == 0:
    raise ConfigError(f'{field}.kernel={r["kernel"]!r} is not allowed; it must be an odd '
                      'integer >= 1')
  errors.check_int(f'{field}.out', r['out'], minimum=1)
  errors.check_choice(f'{field}.stride', r['stride'], (1, 2))
  errors.check_int(f'{field}.repeats', r['repeats'], minimum=1)
  errors.check_choice(f'{field}.activation', r['activation'], ACTIVATIONS)
  errors.check_choice(f'{field}.se', r['se'], (False, True))
  if r['block'] == 'ir':
    errors.check_positive(f'{field}.expansion', r['expansion'])
    if expansion_unit == 'channels' and not _is_int(r['expansion']):
      raise ConfigError(f'{field}.expansion={r["expansion"]!r} is not allowed; with '
                        "model.expansion_unit='channels' it must be an integer")
  else:
    if r['expansion'] is not None:
      raise ConfigError(f'{field}.expansion={r["expansion"]!r} is not allowed; only \'ir\' '
                        'rows expand, so it must be None')
    if r['se']:
      raise ConfigError(f"{field}.se=True is not allowed; only 'ir' rows have squeeze-and-excite")
  return r


def resolve(model_config: Any, in_channels: int = 3) -> Architecture:
  """Validates `config.model` and returns its architecture with the width multiplier applied."""
  alpha = errors.check_positive('model.width_multiplier', model_config.width_multiplier)
  unit = errors.check_choice('model.expansion_unit', model_config.expansion_unit,
                                    EXPANSION_UNITS)
  head_width = errors.check_int('model.head_width', model_config.head_width, minimum=0)
  errors.check_choice('model.head_activation', model_config.head_activation,
                             ACTIVATIONS)
  table = model_config.blocks
  if not isinstance(table, Sequence) or isinstance(table, str) or not table:
    raise ConfigError(f'model.blocks={table!r} is malformed; it must be a non-empty sequence '
                      'of rows (' + ', '.join(ROW_FIELDS) + ')')
  rows = [_check_row(f'model.blocks[{i}]', row, unit) for i, row in enumerate(table)]

  def scale(width: float) -> int:
    return make_divisible(width * alpha)

  layers = []
  width = base_width = in_channels  # the block input's width, scaled and as in the table
  for i, r in enumerate(rows):
    feeds_classifier = i == len(rows) - 1 and not head_width and r['block'] == 'conv'
    out = make_divisible(r['out'] * max(alpha, 1.0)) if feeds_classifier else scale(r['out'])
    for repeat in range(r['repeats']):
      expanded = se_width = 0
      if r['block'] == 'ir':
        if unit == 'ratio':
          expanded = int(round(width * r['expansion']))
        else:  # keep the table's expansion ratio at any width, as TF-slim and Keras do
          expanded = make_divisible(width * r['expansion'] / base_width)
        se_width = make_divisible(expanded / 4) if r['se'] else 0
      layers.append(Layer(block=r['block'], kernel=r['kernel'], in_width=width,
                          expanded=expanded, out=out, se_width=se_width,
                          activation=r['activation'],
                          stride=r['stride'] if repeat == 0 else 1))
      width, base_width = out, r['out']
  if head_width:
    head_width = make_divisible(head_width * max(alpha, 1.0))
  return Architecture(tuple(layers), head_width, model_config.head_activation)


def check_image_size(architecture: Architecture, image_size: Any) -> int:
  minimum = architecture.min_image_size
  if not _is_int(image_size) or image_size < minimum:
    raise ConfigError(f'input.image_size={image_size!r} is not allowed; this architecture '
                      f'(total stride {architecture.total_stride}) needs an integer >= {minimum}')
  return image_size
