"""The one network builder: table rows in, a MobileNet out. It never names a MobileNet version."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.models.architecture import Architecture
from mobilenet_jax.models.blocks import (ConvLayer, DepthwiseSeparable, FusedInvertedResidual,
                                         InvertedResidual, MultiQueryAttention)
from mobilenet_jax.models.layers import ConvBN, DropPath, activate, dense_init
from mobilenet_jax.ops.batch_norm import BatchNorm
from mobilenet_jax.ops.conv import Conv

BLOCKS = {'conv': ConvLayer, 'ds': DepthwiseSeparable, 'ir': InvertedResidual,
          'uib': InvertedResidual, 'fused': FusedInvertedResidual, 'mqa': MultiQueryAttention}


class MobileNet(nn.Module):
  """Table rows, global average pooling, optional head conv, dropout, classifier.

  Parameters are float32 whatever `dtype` (the compute dtype) is; logits are float32. Stochastic
  depth grows linearly with the block index, from 0 at the first block after the stem to
  `drop_path_rate` * (n - 1) / n at the last of n, as timm counts it.
  """
  architecture: Architecture
  num_classes: int = 1000
  dropout_rate: float = 0.2
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_group_size: int = 0  # batch-norm statistics over groups of this many examples; 0: the batch
  padding: str = 'symmetric'
  depthwise_implementation: str = 'auto'
  conv_implementation: str = 'auto'
  se_gate: str = 'hard_sigmoid'
  layer_scale_init: float = 0.0
  drop_path_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    norm = functools.partial(BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=self.bn_epsilon, dtype=self.dtype,
                             group_size=self.bn_group_size)
    conv_bn = functools.partial(ConvBN, norm=norm, padding=self.padding,
                                depthwise_implementation=self.depthwise_implementation,
                                conv_implementation=self.conv_implementation,
                                dtype=self.dtype)
    conv = functools.partial(Conv, padding=self.padding,
                             implementation=self.conv_implementation, dtype=self.dtype)
    x = images.astype(self.dtype)
    layers = self.architecture.layers
    for i, layer in enumerate(layers):
      drop_path = functools.partial(
          DropPath, self.drop_path_rate * max(i - 1, 0) / max(len(layers) - 1, 1),
          deterministic=not train)
      inverted = {'se_gate': self.se_gate, 'layer_scale_init': self.layer_scale_init,
                  'drop_path': drop_path, 'dtype': self.dtype}
      extra = {
          'ir': inverted,
          'uib': inverted,
          'fused': {'drop_path': drop_path},
          'mqa': {'conv': conv, 'norm': norm, 'layer_scale_init': self.layer_scale_init,
                  'drop_path': drop_path, 'dtype': self.dtype},
      }.get(layer.block, {})
      x = BLOCKS[layer.block](layer, conv_bn, name=f'{layer.block}_{i}', **extra)(x)
    x = jnp.mean(x, axis=(1, 2))
    head_width = self.architecture.head_width
    if head_width and self.architecture.head_batch_norm:  # V4: a 1x1 conv + BN on the pooled map
      x = conv_bn(head_width, 1, 1, self.architecture.head_activation, name='head')(
          x[:, None, None, :])[:, 0, 0, :]
    elif head_width:
      x = nn.Dense(head_width, dtype=self.dtype, kernel_init=dense_init, name='head_conv')(x)
      x = activate(self.architecture.head_activation, x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                 name='classifier')(x)
    return x.astype(jnp.float32)
