"""The one network builder: table rows in, a MobileNet out. It never names a MobileNet version."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.models.architecture import Architecture, features
from mobilenet_jax.models.blocks import (ConvLayer, DepthwiseSeparable, FusedInvertedResidual,
                                         InvertedResidual, MultiQueryAttention)
from mobilenet_jax.models.fusion import MultiScaleFusion
from mobilenet_jax.models.layers import (ConvBN, DropPath, activate, dense_init,
                                         float32_dot_general)
from mobilenet_jax.ops.batch_norm import BatchNorm
from mobilenet_jax.ops.conv import Conv

BLOCKS = {'conv': ConvLayer, 'ds': DepthwiseSeparable, 'ir': InvertedResidual,
          'uib': InvertedResidual, 'fused': FusedInvertedResidual, 'mqa': MultiQueryAttention}


class MobileNet(nn.Module):
  """Table rows, global average pooling, optional head conv, dropout, classifier; with the
  'msfa' head (V5) the rows' last two resolutions are fused into a token map, which is pooled.
  With `num_classes` 0 the network ends before pooling: it returns the last feature map, or the
  token map of the 'msfa' head (Gemma 3n's vision encoder).

  Parameters are float32 whatever `dtype` (the compute dtype) is; logits are float32. Stochastic
  depth grows linearly with the block index, from 0 at the first block after the stem to
  `drop_path_rate` * (n - 1) / n at the last of n, as timm counts it.

  With `features_only` (a backbone, timm's name) the network stops before its head: it has no
  head or classifier and returns the list of the feature maps `out_indices` picks from
  `architecture.features` (NHWC, float32 or wider), the last block's output at each resolution.
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
  norm: str = 'batch_norm'   # or 'rms_norm' (V5): RMSNorm with bn_epsilon, no statistics
  stem_bias: bool = False    # a bias on the first row's conv (V5)
  dtype: jnp.dtype = jnp.float32
  features_only: bool = False
  out_indices: tuple[int, ...] = (0, 1, 2, 3, 4)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array | list[jax.Array]:
    if self.norm == 'rms_norm':
      norm = functools.partial(nn.RMSNorm, epsilon=self.bn_epsilon, dtype=self.dtype)
    else:
      norm = functools.partial(BatchNorm, use_running_average=not train,
                               momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                               dtype=self.dtype, group_size=self.bn_group_size)
    conv_bn = functools.partial(ConvBN, norm=norm, padding=self.padding,
                                depthwise_implementation=self.depthwise_implementation,
                                conv_implementation=self.conv_implementation,
                                dtype=self.dtype)
    conv = functools.partial(Conv, padding=self.padding,
                             implementation=self.conv_implementation, dtype=self.dtype)
    x = images.astype(self.dtype)
    arch = self.architecture
    layers, taps, maps = arch.layers, [], []
    taken = [f.layer for f in features(arch)]
    for i, layer in enumerate(arch.body if self.features_only else layers):
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
      if i == 0 and layer.block == 'conv' and self.stem_bias:
        extra = {'use_bias': True}
      x = BLOCKS[layer.block](layer, conv_bn, name=f'{layer.block}_{i}', **extra)(x)
      maps.append(x)
      if i in arch.fusion_taps:
        taps.append(x)
    if self.features_only:
      return [maps[taken[k]].astype(jnp.promote_types(self.dtype, jnp.float32))
              for k in self.out_indices]
    if arch.head == 'msfa':
      x = MultiScaleFusion(arch.head_width, arch.fusion_resolution, arch.fusion_expansion,
                           arch.head_activation, conv_bn, norm, name='msfa')(taps)
    if not self.num_classes:
      return x.astype(jnp.float32)
    x = jnp.mean(x, axis=(1, 2))
    head_width = self.architecture.head_width if arch.head == 'pool' else 0
    if head_width and self.architecture.head_batch_norm:  # V4: a 1x1 conv + BN on the pooled map
      x = conv_bn(head_width, 1, 1, self.architecture.head_activation, name='head')(
          x[:, None, None, :])[:, 0, 0, :]
    elif head_width:
      x = nn.Dense(head_width, dtype=self.dtype, kernel_init=dense_init, name='head_conv')(x)
      x = activate(self.architecture.head_activation, x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    # Accumulated and returned in float32 by the matmul itself: the loss and the softmax of a
    # bfloat16 network see logits that were never rounded to 8 bits.
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                    dot_general=float32_dot_general, name='classifier')(x)
