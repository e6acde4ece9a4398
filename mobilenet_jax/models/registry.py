"""Models by name: `create_model(config.model)` is the only place a trainer builds a network."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mobilenet_jax import errors
from mobilenet_jax.models import architecture
from mobilenet_jax.models.network import MobileNet
from mobilenet_jax.ops import conv, depthwise, padding

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
NORMS = ('batch_norm', 'rms_norm')


def _mobilenet(model_config: Any) -> nn.Module:
  arch = architecture.resolve(model_config)
  # 0: no classifier; the network returns its feature map (V5: the MSFA's token map).
  errors.check_int('model.num_classes', model_config.num_classes, minimum=0)
  errors.check_range('model.dropout_rate', model_config.dropout_rate, 0, 1)
  errors.check_range('model.bn_momentum', model_config.bn_momentum, 0, 1)
  errors.check_positive('model.bn_epsilon', model_config.bn_epsilon)
  errors.check_int('model.bn_group_size', model_config.get('bn_group_size', 0), minimum=0)
  errors.check_choice('model.padding', model_config.padding, padding.PADDINGS)
  depthwise.check_implementation(model_config.depthwise_implementation)
  errors.check_choice('model.conv_implementation',
                             model_config.conv_implementation, conv.CHOICES)
  errors.check_choice('model.se_gate', model_config.se_gate, architecture.ACTIVATIONS)
  errors.check_positive('model.layer_scale_init', model_config.layer_scale_init, allow_zero=True)
  errors.check_range('model.drop_path_rate', model_config.drop_path_rate, 0, 1)
  errors.check_choice('model.dtype', model_config.dtype, tuple(DTYPES))
  errors.check_choice('model.norm', model_config.norm, NORMS)
  errors.check_choice('model.stem_bias', model_config.stem_bias, (False, True))
  return MobileNet(
      architecture=arch,
      num_classes=model_config.num_classes,
      dropout_rate=float(model_config.dropout_rate),
      bn_momentum=model_config.bn_momentum,
      bn_epsilon=model_config.bn_epsilon,
      bn_group_size=model_config.get('bn_group_size', 0),
      padding=model_config.padding,
      depthwise_implementation=model_config.depthwise_implementation,
      conv_implementation=model_config.conv_implementation,
      se_gate=model_config.se_gate,
      layer_scale_init=float(model_config.layer_scale_init),
      drop_path_rate=float(model_config.drop_path_rate),
      norm=model_config.norm,
      stem_bias=model_config.stem_bias,
      dtype=DTYPES[model_config.dtype])


MODELS: dict[str, Callable[[Any], nn.Module]] = {'mobilenet': _mobilenet}


def create_model(model_config: Any) -> nn.Module:
  """Validates `config.model` and builds the network it names; raises ConfigError if bad."""
  errors.check_choice('model.name', model_config.name, tuple(MODELS))
  return MODELS[model_config.name](model_config)
