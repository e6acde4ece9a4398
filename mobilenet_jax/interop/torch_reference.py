"""The PyTorch MobileNets we measure ourselves against: torchvision's (V2, V3), timm's (V4 and V5,
which only timm has), and V1 from our table.

torch, torchvision and timm are optional (benchmark and interop tests only): see
requirements-reference.txt.
"""

import sys
import types
from typing import Any

from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop.sources import SOURCES
from mobilenet_jax.models import architecture

# Our config families and the torchvision builders of the same architectures.
TORCHVISION_BUILDERS = SOURCES['torchvision'].builders
# Families whose only PyTorch implementation is timm's (V1 has timm's too, but the speed grid
# has always measured V1 against the model built from our table, below).
TIMM_ONLY = tuple(family for family in SOURCES['timm'].builders
                  if family not in TORCHVISION_BUILDERS and family != 'v1')


def import_torchvision_models() -> types.ModuleType:
  """`torchvision.models`, importable next to the CPU build of torch.

  The registry's torchvision wheel is a CUDA build; importing it next to the CPU torch fails
  with `RuntimeError: operator torchvision::nms does not exist`, raised while
  `torchvision._meta_registrations` registers meta kernels for detection ops. MobileNets use
  none of those ops, so an empty module stands in for that one before the first import.
  """
  if 'torchvision' not in sys.modules:
    name = 'torchvision._meta_registrations'
    sys.modules.setdefault(name, types.ModuleType(name))
  import torchvision.models  # pylint: disable=g-import-not-at-top
  return torchvision.models


def create_timm_model(family: str, width: float = 1.0, num_classes: int = 1000, **kwargs):
  """timm's model of our family (random weights), at `width` where timm builds that width;
  `kwargs` go to `timm.create_model` (drop_rate, drop_path_rate)."""
  import_torchvision_models()  # timm imports torchvision
  import timm  # pylint: disable=g-import-not-at-top
  name = SOURCES['timm'].builders[family]
  if width != 1.0 and family.startswith('v5'):  # one name at every width, as timm builds V5
    kwargs['channel_multiplier'] = width
  elif width != 1.0:
    name = name.rsplit('_100', 1)[0] + f'_{round(width * 100):03d}'
  if not timm.is_model(name):
    raise ConfigError(f'model.width_multiplier={width}: timm builds no {name}')
  return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def create_model(config: Any, params: int, timm: bool = False):
  """The PyTorch model with the architecture of `config.model`: torchvision's where it has one,
  timm's for the families only timm has, else built from our table (V1); timm's for every family
  with `timm` (what a GPU user of PyTorch trains).

  `params` is our model's parameter count. Raises ConfigError when the two architectures differ
  (a table variant torchvision does not have): the counts must be equal.
  """
  import torch  # pylint: disable=g-import-not-at-top
  model_config = config.model
  if timm or config.family in TIMM_ONLY:
    model = create_timm_model(config.family, model_config.width_multiplier,
                              model_config.num_classes, drop_rate=model_config.dropout_rate,
                              drop_path_rate=model_config.drop_path_rate)
  elif config.family in TORCHVISION_BUILDERS:
    build = getattr(import_torchvision_models(), TORCHVISION_BUILDERS[config.family])
    model = build(num_classes=model_config.num_classes,
                  width_mult=model_config.width_multiplier,
                  dropout=model_config.dropout_rate)
  else:
    model = _separable_model(architecture.resolve(model_config), model_config, torch.nn)
  theirs = sum(p.numel() for p in model.parameters())
  stride = architecture.resolve(model_config).total_stride
  if stride != 32:  # every reference MobileNet downsamples 32x
    raise ConfigError(f'config {config.name} has no PyTorch counterpart here: its total stride '
                      f'is {stride}, the published models\' is 32')
  if params != theirs:
    raise ConfigError(
        f'config {config.name} has no PyTorch counterpart here: {params:,} parameters against '
        f"{theirs:,}; compare the papers' tables ({', '.join(TORCHVISION_BUILDERS)}, v1)")
  return model


def _separable_model(arch: architecture.Architecture, model_config, nn):
  """A MobileNet of conv and depthwise-separable rows (V1: torchvision has none)."""
  activations = {'relu': nn.ReLU, 'relu6': nn.ReLU6, 'hard_swish': nn.Hardswish}

  def conv_bn(cin, cout, kernel, stride, activation, groups=1):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), activations[activation]()]

  layers = []
  for layer in arch.layers:
    if layer.block == 'conv':
      layers += conv_bn(layer.in_width, layer.out, layer.kernel, layer.stride, layer.activation)
    elif layer.block == 'ds':
      layers += conv_bn(layer.in_width, layer.in_width, layer.kernel, layer.stride,
                        layer.activation, groups=layer.in_width)
      layers += conv_bn(layer.in_width, layer.out, 1, 1, layer.activation)
    else:
      raise ConfigError(f"block '{layer.block}' has no PyTorch builder here; allowed: conv, ds")
  width = arch.layers[-1].out
  if arch.head_width:
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, arch.head_width),
               activations[arch.head_activation]()]
    width = arch.head_width
  else:
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
  layers += [nn.Dropout(model_config.dropout_rate), nn.Linear(width, model_config.num_classes)]
  return nn.Sequential(*layers)
