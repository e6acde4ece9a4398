"""The MobileNet blocks. Each is built from one resolved table row (`architecture.Layer`).

`conv_bn`, `conv` and `norm` arrive bound to the network's padding, implementations and
train/eval mode, and `drop_path` to the block's stochastic-depth rate, so blocks never know which
mode they run in.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.models.architecture import Layer
from mobilenet_jax.models.layers import DropPath, SqueezeExcite, add_residual

ModuleDef = Any


class ConvLayer(nn.Module):
  """A plain conv-BN-activation row: the stem, and the last 1x1 conv before pooling."""
  layer: Layer
  conv_bn: ModuleDef
  use_bias: bool = False  # V5's stem conv has a bias before its norm

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.layer
    return self.conv_bn(r.out, r.kernel, r.stride, r.activation, use_bias=self.use_bias,
                        name='conv_bn')(x)


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
  """V2/V3's inverted residual and V4's universal inverted bottleneck, one block:

  [start depthwise + BN] -> [expand 1x1 + BN + act] -> [depthwise + BN + act] -> [SE] ->
  project 1x1 + BN -> [layer scale] -> + shortcut (through stochastic depth).

  The start depthwise (V4's ExtraDW and ConvNeXt-like rows) has no activation; the stride sits
  on the middle depthwise when there is one. The expansion conv is skipped when the expanded
  width equals the input width (V2's t = 1); the shortcut is added when the block keeps both
  resolution and width. A 'uib' row always expands, as timm's UIB does (V5's rows of ratio 1).
  """
  layer: Layer
  conv_bn: ModuleDef
  se_gate: str = 'hard_sigmoid'
  layer_scale_init: float = 0.0
  drop_path: ModuleDef = DropPath
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.layer
    y = x
    if r.start_kernel:
      y = self.conv_bn(x.shape[-1], r.start_kernel, 1 if r.kernel else r.stride, None,
                       depthwise=True, name='start_depthwise')(y)
    if r.block == 'uib' or r.expanded != x.shape[-1]:
      y = self.conv_bn(r.expanded, 1, 1, r.activation, name='expand')(y)
    if r.kernel:
      y = self.conv_bn(r.expanded, r.kernel, r.stride, r.activation, depthwise=True,
                       name='depthwise')(y)
    if r.se_width:
      y = SqueezeExcite(r.se_width, self.se_gate, self.dtype, name='se')(y)
    y = self.conv_bn(r.out, 1, 1, None, name='project')(y)
    return add_residual(x, y, r.stride, self.layer_scale_init, self.drop_path)


class FusedInvertedResidual(nn.Module):
  """V4's FusedIB: a k x k conv expands (with the stride), a 1x1 conv projects linearly."""
  layer: Layer
  conv_bn: ModuleDef
  drop_path: ModuleDef = DropPath

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.layer
    y = self.conv_bn(r.expanded, r.kernel, r.stride, r.activation, name='expand')(x)
    y = self.conv_bn(r.out, 1, 1, None, name='project')(y)
    return add_residual(x, y, r.stride, 0.0, self.drop_path)


# timm's initialisation of the attention's convolutions, which it found kept the hybrids stable.
attention_init = nn.initializers.xavier_uniform()


class MultiQueryAttention(nn.Module):
  """V4's Mobile MQA: batch norm, then attention of `heads` query heads over one shared key and
  value head (each `key_dim` wide), keys and values optionally down-sampled by a stride-2
  depthwise conv + BN each; softmax(q k^T / sqrt(key_dim)) v; a 1x1 output conv, layer scale
  and the shortcut. No biases, no activation."""
  layer: Layer
  conv_bn: ModuleDef
  conv: ModuleDef
  norm: ModuleDef
  layer_scale_init: float = 0.0
  drop_path: ModuleDef = DropPath
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.layer
    n, h, w, c = x.shape
    y = self.norm(name='norm')(x)
    query = self.conv(r.heads * r.key_dim, kernel_init=attention_init, name='query')(y)

    def one_head(name: str) -> jax.Array:
      t = y
      if r.kv_stride > 1:
        t = self.conv_bn(c, r.kernel, r.kv_stride, None, depthwise=True, name=f'{name}_down')(t)
      return self.conv(r.key_dim, kernel_init=attention_init, name=name)(t).reshape(
          n, -1, r.key_dim)

    keys, values = one_head('key'), one_head('value')
    query = query.reshape(n, h * w, r.heads, r.key_dim) * r.key_dim ** -0.5
    # Scores accumulated by the matmul in float32 at least (bfloat16 compute; float64 when the
    # model computes in it), the softmax over them too.
    logits = jnp.einsum('nlhd,npd->nhlp', query, keys,
                        preferred_element_type=jnp.promote_types(query.dtype, jnp.float32))
    weights = jax.nn.softmax(logits, axis=-1).astype(values.dtype)
    attended = jnp.einsum('nhlp,npd->nlhd', weights, values).reshape(n, h, w, -1)
    y = self.conv(r.out, kernel_init=attention_init, name='output')(attended)
    return add_residual(x, y, 1, self.layer_scale_init, self.drop_path)

  def attention_madds(self, input_shape: tuple[int, ...]) -> int:
    """The multiply-adds of the two attention matmuls for one image (q k^T and weights v)."""
    h, w = input_shape[1:3]
    kv_pixels = math.ceil(h / self.layer.kv_stride) * math.ceil(w / self.layer.kv_stride)
    return 2 * h * w * self.layer.heads * kv_pixels * self.layer.key_dim
