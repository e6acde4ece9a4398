"""Depthwise convolution, behind one module so that its implementation can be chosen per backend.

Every implementation computes the same function from the same parameter (a kernel of shape
(k, k, 1, C), the layout of `nn.Conv(..., feature_group_count=C)`), so checkpoints move freely
between them. XLA:CPU lowers grouped convolutions to a slow generic loop, while k*k shifted
multiply-adds vectorise well; accelerators have fast grouped-convolution kernels.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mobilenet_jax import config_errors, implementations

PADDINGS = ('symmetric', 'same')


def spatial_padding(size: int, kernel: int, stride: int, mode: str) -> tuple[int, int]:
  """(low, high) padding of one spatial axis.

  'symmetric' pads k // 2 on both sides (PyTorch / torchvision); 'same' pads as TensorFlow does,
  putting the odd pixel at the end, so that the output has ceil(size / stride) pixels.
  """
  if mode == 'symmetric':
    return kernel // 2, kernel // 2
  if mode == 'same':
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2
  config_errors.check_choice('model.padding', mode, PADDINGS)


def _grouped(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  return lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding=pads,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=x.shape[-1])


def _shifted(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  """Sum over the k*k taps of a strided slice of the padded input times that tap's weights."""
  x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  n, height, width, channels = x.shape
  k = kernel.shape[0]
  out_h = (height - k) // stride + 1
  out_w = (width - k) // stride + 1
  out = None
  for i in range(k):
    for j in range(k):
      tap = lax.slice(
          x, (0, i, j, 0),
          (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, channels),
          (1, stride, stride, 1))
      term = tap * kernel[i, j, 0]
      out = term if out is None else out + term
  return out


IMPLEMENTATIONS: dict[str, Callable[..., jax.Array]] = {
    'grouped': _grouped,
    'shifted': _shifted,
}
# The fastest implementation measured on each backend; anything unlisted uses 'grouped'.
FASTEST_ON_BACKEND = {'cpu': 'shifted'}
CHOICES = ('auto', *IMPLEMENTATIONS)


def resolve_implementation(name: str) -> str:
  return implementations.resolve('model.depthwise_implementation', name, IMPLEMENTATIONS,
                                 FASTEST_ON_BACKEND, 'grouped')


class DepthwiseConv(nn.Module):
  """k x k depthwise convolution without bias (batch norm follows it in every MobileNet)."""
  kernel_size: int
  strides: int = 1
  padding: str = 'symmetric'
  implementation: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, 1, x.shape[-1]), jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    pads = tuple(spatial_padding(size, k, self.strides, self.padding) for size in x.shape[1:3])
    run = IMPLEMENTATIONS[resolve_implementation(self.implementation)]
    return run(x, kernel, self.strides, pads)
