"""The one network builder: table rows in, a MobileNet out. It never names a MobileNet version."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.models.architecture import Architecture
from mobilenet_jax.models.blocks import ConvLayer, DepthwiseSeparable, InvertedResidual
from mobilenet_jax.models.layers import ConvBN, activate, dense_init
from mobilenet_jax.ops.batch_norm import BatchNorm

BLOCKS = {'conv': ConvLayer, 'ds': DepthwiseSeparable, 'ir': InvertedResidual}


class MobileNet(nn.Module):
  """Table rows, global average pooling, optional head conv, dropout, classifier.

  Parameters are float32 whatever `dtype` (the compute dtype) is; logits are float32.
  """
  architecture: Architecture
  num_classes: int = 1000
  dropout_rate: float = 0.2
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  padding: str = 'symmetric'
  depthwise_implementation: str = 'auto'
  conv_implementation: str = 'auto'
  se_gate: str = 'hard_sigmoid'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    norm = functools.partial(BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=self.bn_epsilon, dtype=self.dtype)
    conv_bn = functools.partial(ConvBN, norm=norm, padding=self.padding,
                                depthwise_implementation=self.depthwise_implementation,
                                conv_implementation=self.conv_implementation,
                                dtype=self.dtype)
    x = images.astype(self.dtype)
    for i, layer in enumerate(self.architecture.layers):
      extra = {'se_gate': self.se_gate, 'dtype': self.dtype} if layer.block == 'ir' else {}
      x = BLOCKS[layer.block](layer, conv_bn, name=f'{layer.block}_{i}', **extra)(x)
    x = jnp.mean(x, axis=(1, 2))
    if self.architecture.head_width:
      x = nn.Dense(self.architecture.head_width, dtype=self.dtype, kernel_init=dense_init,
                   name='head_conv')(x)
      x = activate(self.architecture.head_activation, x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                 name='classifier')(x)
    return x.astype(jnp.float32)
