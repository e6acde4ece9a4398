"""Architecture tables: validation, repeats and the width multiplier, all in one place, in plain
Python (no JAX), so that configs, checks and sweeps can resolve a table cheaply.

A table is a sequence of rows with the fields of `ROW_FIELDS`, read like the papers' tables:

  block       'conv' (conv-BN-act), 'ds' (depthwise separable, V1), 'ir' (inverted residual,
              V2/V3), 'uib' (V4's universal inverted bottleneck: the inverted residual with an
              optional depthwise conv before the expansion), 'fused' (V4's FusedIB: a k x k conv
              expands, a 1x1 conv projects) or 'mqa' (V4's mobile multi-query attention)
  kernel      spatial kernel size (odd); 'uib': a pair (start, middle), the kernels of the
              depthwise conv before the expansion and of the one after it, 0 for none (ExtraDW:
              both; IB: (0, k); ConvNeXt-like: (a, 0); FFN: (0, 0)); 'mqa': the kernel of the
              depthwise conv that down-samples keys and values
  expansion   'ir', 'uib', 'fused': the expanded width, as a ratio of the input width (V2's t,
              V4's e) or in channels at width multiplier 1 (V3's exp size), as
              `model.expansion_unit` says; 'mqa': (heads, key dim, kv stride); None otherwise
  out         output channels at width multiplier 1
  se          'ir' and 'uib' only: squeeze-and-excite after the depthwise conv
  activation  one of `ACTIVATIONS` (projections are always linear); None for 'mqa', which has none
  stride      1 or 2, for the first repeat ('mqa': 1, the block keeps its resolution)
  repeats     how many times the row is stacked (later repeats have stride 1)

`resolve` turns a table into `Layer`s with absolute widths. Width rules (those of the reference
implementations): every output width is `make_divisible(width * alpha)`, except the width that
feeds the classifier when a head layer produces it (the post-pooling head conv, or a final 1x1
'conv' row), which is scaled by max(alpha, 1): shrinking the network keeps its 1280 (or 1024)
features; with `model.scale_stem` False the stem (the first row) keeps its width too, as timm's
V4 below width 1 and Keras's V3 at every width do. An expanded width keeps its ratio to the block's input width: `round(in * t)` for
ratios, `make_divisible(in * exp / in_at_alpha_1)` for channels (TF-slim and Keras, whose V3
figures at alpha 0.75 the paper reports; torchvision ships alpha 1 only, where all rules agree).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

from mobilenet_jax import errors
from mobilenet_jax.errors import ConfigError

ROW_FIELDS = ('block', 'kernel', 'expansion', 'out', 'se', 'activation', 'stride', 'repeats')
BLOCK_TYPES = ('conv', 'ds', 'ir', 'uib', 'fused', 'mqa')
EXPANDING_BLOCKS = ('ir', 'uib', 'fused')   # the blocks whose rows give an expansion
EXPANSION_UNITS = ('ratio', 'channels')
# What follows the blocks: 'pool' (global pooling, the optional head conv, the classifier) or
# 'msfa' (V5's multi-scale fusion adapter: the last two resolutions fused into a token map, which
# is then pooled for the classifier).
HEADS = ('pool', 'msfa')
# The activation names a table may use; `layers.ACTIVATIONS` holds their functions. Kept here so
# that tables resolve in plain Python, without importing JAX.
ACTIVATIONS = ('relu', 'relu6', 'hard_swish', 'hard_sigmoid', 'gelu', 'gelu_tanh')


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
  kernel: int        # 'uib': the middle depthwise kernel, 0 when there is none
  in_width: int
  expanded: int      # the expanding blocks only, else 0
  out: int
  se_width: int      # 0 when the block has no squeeze-and-excite
  activation: str | None
  stride: int
  start_kernel: int = 0   # 'uib': the depthwise kernel before the expansion, 0 when none
  heads: int = 0          # 'mqa': query heads, the one key and value head's width, and the
  key_dim: int = 0        # stride of the depthwise conv that down-samples keys and values
  kv_stride: int = 1


@dataclasses.dataclass(frozen=True)
class Architecture:
  layers: tuple[Layer, ...]
  head_width: int    # the 1x1 conv after pooling; 0 when there is none
  head_activation: str
  head_batch_norm: bool = False  # that conv without bias, then batch norm (V4); else with bias
  head: str = 'pool'
  # 'msfa': the layers whose outputs it fuses, highest resolution first (the last layer before
  # the last stride-2 layer, and the last layer); its output resolution and FFN expansion ratio.
  # head_width is then the width of its token map.
  fusion_taps: tuple[int, ...] = ()
  fusion_resolution: int = 0
  fusion_expansion: float = 0.0

  @property
  def total_stride(self) -> int:
    stride = 1
    for layer in self.layers:
      stride *= layer.stride
    return stride

  @property
  def body(self) -> tuple[Layer, ...]:
    """The layers before pooling that make feature maps: all but the head's pre-pooling 1x1 conv
    (a final 'conv' layer with no post-pooling head conv, V2's 1280: timm's `conv_head`)."""
    if not self.head_width and len(self.layers) > 1 and self.layers[-1].block == 'conv':
      return self.layers[:-1]
    return self.layers

  @property
  def min_image_size(self) -> int:
    # The smallest input whose last feature map still has a pixel without relying on padding:
    # 32 for the published tables, less for the small-image variants with fewer stride-2 rows.
    return self.total_stride


@dataclasses.dataclass(frozen=True)
class Feature:
  """One feature map of the backbone: the output of `layers[layer]`, of `channels` channels at
  1/`stride` of the input's resolution."""
  layer: int
  channels: int
  stride: int


def features(arch: Architecture) -> tuple[Feature, ...]:
  """The backbone's feature maps, one per resolution, as timm's `features_only` takes them: the
  output of the last block of the body at each total stride (2, 4, 8, 16, 32 for the published
  tables: 112, 56, 28, 14 and 7 px at 224 px; fewer for the small-image variants)."""
  found, stride = [], 1
  for i, layer in enumerate(arch.body):
    stride *= layer.stride
    last = i + 1 == len(arch.body) or arch.body[i + 1].stride > 1
    if last:
      found.append(Feature(i, layer.out, stride))
  return tuple(found)


def check_out_indices(arch: Architecture, out_indices: Any) -> tuple[int, ...]:
  """`out_indices` as a tuple; raises ConfigError unless it picks existing feature maps."""
  count = len(features(arch))
  if (isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence)
      or not out_indices or not all(_is_int(i) and 0 <= i < count for i in out_indices)):
    raise ConfigError(f'out_indices={out_indices!r} is not allowed; this architecture has '
                      f'{count} feature maps: give a non-empty sequence of indices in '
                      f'0-{count - 1}')
  return tuple(out_indices)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_kernel(value: Any, allow_zero: bool = False) -> bool:
  return _is_int(value) and (value == 0 and allow_zero or value >= 1 and value % 2 == 1)


def _check_row(field: str, row: Any, expansion_unit: str) -> dict[str, Any]:
  if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != len(ROW_FIELDS):
    raise ConfigError(f'{field}={row!r} is malformed; a row has {len(ROW_FIELDS)} fields: '
                      + ', '.join(ROW_FIELDS))
  r = dict(zip(ROW_FIELDS, row))
  block = errors.check_choice(f'{field}.block', r['block'], BLOCK_TYPES)
  kernel = r['kernel']
  if block == 'uib':
    if (not isinstance(kernel, Sequence) or len(kernel) != 2
        or not all(_is_kernel(k, allow_zero=True) for k in kernel)):
      raise ConfigError(f'{field}.kernel={kernel!r} is not allowed; a \'uib\' row takes a pair '
                        '(start, middle) of odd depthwise kernels, 0 for none')
    if r['stride'] == 2 and not any(kernel):
      raise ConfigError(f'{field}.stride=2 is not allowed with kernel (0, 0): only a depthwise '
                        'conv can stride')
  elif not _is_kernel(kernel):
    raise ConfigError(f'{field}.kernel={kernel!r} is not allowed; it must be an odd integer >= 1')
  errors.check_int(f'{field}.out', r['out'], minimum=1)
  errors.check_choice(f'{field}.stride', r['stride'], (1, 2) if block != 'mqa' else (1,))
  errors.check_int(f'{field}.repeats', r['repeats'], minimum=1)
  errors.check_choice(f'{field}.activation', r['activation'],
                      (None,) if block == 'mqa' else ACTIVATIONS)
  errors.check_choice(f'{field}.se', r['se'], (False, True) if block in ('ir', 'uib') else (False,))
  expansion = r['expansion']
  if block in EXPANDING_BLOCKS:
    errors.check_positive(f'{field}.expansion', expansion)
    if expansion_unit == 'channels' and not _is_int(expansion):
      raise ConfigError(f'{field}.expansion={expansion!r} is not allowed; with '
                        "model.expansion_unit='channels' it must be an integer")
  elif block == 'mqa':
    if (not isinstance(expansion, Sequence) or len(expansion) != 3
        or not all(_is_int(v) and v >= 1 for v in expansion) or expansion[2] not in (1, 2)):
      raise ConfigError(f'{field}.expansion={expansion!r} is not allowed; an \'mqa\' row takes '
                        '(heads, key dim, kv stride): integers >= 1, kv stride 1 or 2')
  elif expansion is not None:
    raise ConfigError(f'{field}.expansion={expansion!r} is not allowed; only '
                      + ', '.join(f"'{b}'" for b in EXPANDING_BLOCKS + ('mqa',))
                      + ' rows take one, so it must be None')
  return r


def resolve(model_config: Any, in_channels: int = 3) -> Architecture:
  """Validates `config.model` and returns its architecture with the width multiplier applied."""
  alpha = errors.check_positive('model.width_multiplier', model_config.width_multiplier)
  unit = errors.check_choice('model.expansion_unit', model_config.expansion_unit,
                                    EXPANSION_UNITS)
  head_width = errors.check_int('model.head_width', model_config.head_width, minimum=0)
  errors.check_choice('model.head_activation', model_config.head_activation,
                             ACTIVATIONS)
  head_batch_norm = errors.check_choice('model.head_batch_norm', model_config.head_batch_norm,
                                        (False, True))
  scale_stem = errors.check_choice('model.scale_stem', model_config.scale_stem, (False, True))
  head = errors.check_choice('model.head', model_config.head, HEADS)
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
    if feeds_classifier:
      out = make_divisible(r['out'] * max(alpha, 1.0))
    elif i == 0 and not scale_stem:
      out = r['out']
    else:
      out = scale(r['out'])
    for repeat in range(r['repeats']):
      expanded = se_width = 0
      if r['block'] in EXPANDING_BLOCKS:
        if unit == 'ratio':
          expanded = int(round(width * r['expansion']))
        else:  # keep the table's expansion ratio at any width, as TF-slim and Keras do
          expanded = make_divisible(width * r['expansion'] / base_width)
        se_width = make_divisible(expanded / 4) if r['se'] else 0
      kernels = {'start_kernel': r['kernel'][0], 'kernel': r['kernel'][1]} if r['block'] == 'uib' \
          else {'kernel': r['kernel']}
      attention = dict(zip(('heads', 'key_dim', 'kv_stride'), r['expansion'])) \
          if r['block'] == 'mqa' else {}
      layers.append(Layer(block=r['block'], in_width=width, expanded=expanded, out=out,
                          se_width=se_width, activation=r['activation'],
                          stride=r['stride'] if repeat == 0 else 1, **kernels, **attention))
      width, base_width = out, r['out']
  if head_width:
    head_width = make_divisible(head_width * max(alpha, 1.0))
  fusion = _fusion(model_config, layers, head_width) if head == 'msfa' else {}
  return Architecture(tuple(layers), head_width, model_config.head_activation, head_batch_norm,
                      head, **fusion)


def _fusion(model_config: Any, layers: list[Layer], head_width: int) -> dict[str, Any]:
  """The 'msfa' head's fields: it fuses the ends of the last two resolutions, as timm's
  `msfa_indices=(-2, -1)` over its stages."""
  strided = [i for i, layer in enumerate(layers) if layer.stride == 2]
  if not strided or strided[-1] == 0:
    raise ConfigError("model.head='msfa' is not allowed for this table; it fuses the last two "
                      'resolutions, so a row after the first must have stride 2')
  if not head_width:
    raise ConfigError("model.head_width=0 is not allowed with model.head='msfa'; it is the "
                      'width of the fused token map (2048 in MobileNetV5)')
  resolution = errors.check_int('model.msfa_resolution', model_config.msfa_resolution,
                                minimum=1)
  expansion = errors.check_positive('model.msfa_expansion', model_config.msfa_expansion)
  return {'fusion_taps': (strided[-1] - 1, len(layers) - 1), 'fusion_resolution': resolution,
          'fusion_expansion': float(expansion)}


def check_image_size(architecture: Architecture, image_size: Any) -> int:
  minimum = architecture.min_image_size
  if not _is_int(image_size) or image_size < minimum:
    raise ConfigError(f'input.image_size={image_size!r} is not allowed; this architecture '
                      f'(total stride {architecture.total_stride}) needs an integer >= {minimum}')
  return image_size
