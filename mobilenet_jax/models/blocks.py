"""The MobileNet blocks. Each is built from one resolved table row (`architecture.Layer`)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.models.architecture import Layer
from mobilenet_jax.models.layers import SqueezeExcite

ModuleDef = Any


class ConvLayer(nn.Module):
  """A plain conv-BN-activation row: the stem, and the last 1x1 conv before pooling."""
  layer: Layer
  conv_bn: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.layer
    return self.conv_bn(r.out, r.kernel, r.stride, r.activation, name='conv_bn')(x)


class DepthwiseSeparable(nn.Module):
  """MobileNetV1: depthwise k x k conv then pointwise 1x1 conv, each with BN and activation."""
  layer: Layer
  conv_bn: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.layer
    x = self.conv_bn(x.shape[-1], r.kernel, r.stride, r.activation, depthwise=True,
                     name='depthwise')(x)
    return self.conv_bn(r.out, 1, 1, r.activation, name='pointwise')(x)


class InvertedResidual(nn.Module):
  """MobileNetV2/V3: expand 1x1, depthwise k x k, optional SE, linear projection 1x1, residual.

  The expansion conv is skipped when the expanded width equals the input width; the residual is
  added when the block keeps both resolution and width.
  """
  layer: Layer
  conv_bn: ModuleDef
  se_gate: str = 'hard_sigmoid'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.layer
    y = x
    if r.expanded != x.shape[-1]:
      y = self.conv_bn(r.expanded, 1, 1, r.activation, name='expand')(y)
    y = self.conv_bn(r.expanded, r.kernel, r.stride, r.activation, depthwise=True,
                     name='depthwise')(y)
    if r.se_width:
      y = SqueezeExcite(r.se_width, self.se_gate, self.dtype, name='se')(y)
    y = self.conv_bn(r.out, 1, 1, None, name='project')(y)
    if r.stride == 1 and r.out == x.shape[-1]:
      y = y + x
    return y
