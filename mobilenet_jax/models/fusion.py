"""MobileNetV5's multi-scale fusion adapter (MSFA), the head of Gemma 3n's vision encoder.

The feature maps it is given (the ends of the last two resolutions) are brought to the highest
of their resolutions by nearest-neighbour upsampling and concatenated on channels; a UIB
feed-forward without depthwise convs and without shortcut (1x1 expand + norm + activation, 1x1
project + norm) maps them to the token width; the map is then average-pooled to `resolution`
(bilinearly resized where the pooling window would not be whole) and normalized.
The resizes follow PyTorch's `F.interpolate` (timm's), which `jax.image.resize` does not for
nearest-neighbour: PyTorch takes source pixel floor(i * in / out), JAX the pixel whose centre is
nearest, which differs for sizes that are not integer multiples.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.models.architecture import make_divisible

ModuleDef = Any


def upsample_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """(N, H, W, C) -> (N, *size, C) as PyTorch's `F.interpolate(mode='nearest')`."""
  for axis, out in zip((1, 2), size):
    # PyTorch's index: floor(i * scale) with the scale in float32, clipped to the last pixel.
    scale = np.float32(x.shape[axis]) / np.float32(out)
    index = np.minimum(np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int32),
                       x.shape[axis] - 1)
    x = jnp.take(x, index, axis=axis)
  return x


def pool_to(x: jax.Array, resolution: int) -> jax.Array:
  """(N, H, W, C) -> (N, resolution, resolution, C): an average pool with a whole window where
  the sizes divide, else a bilinear resize without antialiasing (PyTorch's align_corners=False)."""
  n, h, w, c = x.shape
  if (h, w) == (resolution, resolution):
    return x
  if h % resolution == 0 and w % resolution == 0:
    return x.reshape(n, resolution, h // resolution, resolution, w // resolution, c).mean(
        axis=(2, 4))
  return jax.image.resize(x, (n, resolution, resolution, c), 'bilinear', antialias=False)


class MultiScaleFusion(nn.Module):
  """The MSFA: feature maps in (highest resolution first), a (N, r, r, width) token map out."""
  width: int
  resolution: int
  expansion: float
  activation: str
  conv_bn: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
    size = features[0].shape[1:3]
    x = jnp.concatenate([f if f.shape[1:3] == size else upsample_nearest(f, size)
                         for f in features], axis=-1)
    x = self.conv_bn(make_divisible(x.shape[-1] * self.expansion), 1, 1, self.activation,
                     name='expand')(x)
    x = self.conv_bn(self.width, 1, 1, None, name='project')(x)
    return self.norm(name='norm')(pool_to(x, self.resolution))
