"""What every config shares: the training section, the model defaults and the table variants.

Each `configs/<family>.py` takes this base, writes its own table, and applies the variants named
in its config argument (`--config=configs/v3_large.py:minimalistic,small_image`).
"""

from collections.abc import Callable, Sequence

import ml_collections

from mobilenet_jax.config_errors import ConfigError

Row = tuple


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = ''                # '<family>[:variants]', set by each config
  config.seed = 0

  config.dataset = 'imagenet2012'
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.input = ml_collections.ConfigDict()
  config.input.image_size = 224

  config.model = ml_collections.ConfigDict()
  config.model.name = 'mobilenet'
  config.model.width_multiplier = 1.0
  config.model.blocks = ()
  config.model.expansion_unit = 'channels'
  config.model.head_width = 0
  config.model.head_activation = 'relu'
  config.model.num_classes = 1000
  config.model.dropout_rate = 0.2
  config.model.bn_momentum = 0.99
  config.model.bn_epsilon = 1e-3
  config.model.se_gate = 'hard_sigmoid'
  config.model.padding = 'symmetric'
  config.model.depthwise_implementation = 'auto'
  config.model.dtype = 'float32'
  return config


def minimalistic(config: ml_collections.ConfigDict) -> None:
  """MobileNetV3 'minimalistic': 3x3 kernels, ReLU everywhere, no squeeze-and-excite."""
  config.model.blocks = tuple(
      (block, 3, expansion, out, False, 'relu', stride, repeats)
      for block, _, expansion, out, _, _, stride, repeats in config.model.blocks)
  config.model.head_activation = 'relu'


def small_image(config: ml_collections.ConfigDict, num_strides: int = 2) -> None:
  """For 28-32 px inputs: the first two stride-2 rows get stride 1 (total stride 32 -> 8).

  At stride 32 a 32 px image ends as a 1x1 feature map, so the last blocks see no spatial
  context and their 5x5 kernels see padding only; at stride 8 a 28-32 px image ends at 4x4, the
  share of spatial context a 224 px image has at 7x7. The earliest strides are the ones removed,
  as CIFAR adaptations of MobileNet do, so that the early high-resolution layers keep the detail
  of a small image; the cost is higher MAdds than a stride-32 net at the same size.
  """
  rows = []
  for block, kernel, expansion, out, se, activation, stride, repeats in config.model.blocks:
    if stride == 2 and num_strides > 0:
      stride, num_strides = 1, num_strides - 1
    rows.append((block, kernel, expansion, out, se, activation, stride, repeats))
  config.model.blocks = tuple(rows)
  config.input.image_size = 32


VARIANTS: dict[str, Callable[[ml_collections.ConfigDict], None]] = {
    'minimalistic': minimalistic,
    'small_image': small_image,
}


def apply_variants(config: ml_collections.ConfigDict, family: str, arg: str | None,
                   allowed: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies the comma-separated variants of the config argument, in the order given."""
  names = [name for name in (arg or '').split(',') if name]
  for name in names:
    if name not in allowed:
      raise ConfigError(f'config variant {name!r} is not allowed for {family}; choose from: '
                        + ', '.join(allowed))
    VARIANTS[name](config)
  config.name = family + (':' + ','.join(names) if names else '')
  return config
