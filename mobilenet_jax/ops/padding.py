"""Spatial padding and the strided windows of a padded input, shared by the conv ops.

The padding convention is a model field because published weights need their own: torchvision's
models were trained with 'symmetric', Keras's with 'same' (they differ for stride-2 convs).
"""

import jax
import jax.numpy as jnp
from jax import lax

from mobilenet_jax import errors

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
  errors.check_choice('model.padding', mode, PADDINGS)


def output_size(padded_size: int, kernel: int, stride: int) -> int:
  return (padded_size - kernel) // stride + 1


def windows(padded: jax.Array, kernel_shape: tuple[int, int], stride: int, out_h: int,
            out_w: int):
  """The kh*kw strided windows of a padded input that taps (0, 0), (0, 1), ... multiply."""
  n, _, _, channels = padded.shape
  for i in range(kernel_shape[0]):
    for j in range(kernel_shape[1]):
      yield lax.slice(
          padded, (0, i, j, 0),
          (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, channels),
          (1, stride, stride, 1))


def pad_spatially(x: jax.Array, pads) -> jax.Array:
  return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
