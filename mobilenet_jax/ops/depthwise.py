"""Depthwise convolution, behind one module so that its implementation can be chosen per backend.

Every implementation computes the same function from the same parameter (a kernel of shape
(k, k, 1, C), the layout of `nn.Conv(..., feature_group_count=C)`), so checkpoints move freely
between them. XLA:CPU lowers grouped convolutions to a slow generic loop, while k*k shifted
multiply-adds vectorise well; accelerators have fast grouped-convolution kernels.

Differentiating the shifted form leaves one slow part on XLA:CPU: the kernel gradient, k*k
reductions over batch and space, each a pass over the whole input and output gradient in memory.
'shifted_vjp' computes it over cache-sized slices of the batch instead (3-4x faster for it, about
half of a MobileNet's train step on CPU).
"""

from collections.abc import Callable

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mobilenet_jax import errors
from mobilenet_jax.ops import implementations, kernels
from mobilenet_jax.ops.padding import output_size, pad_spatially, spatial_padding, windows


def _grouped(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  return lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding=pads,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=x.shape[-1])


def _shifted(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  """Sum over the taps of a strided slice of the padded input times that tap's weights."""
  return _shifted_padded(pad_spatially(x, pads), kernel, stride)


def _shifted_padded(padded: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  kh, kw = kernel.shape[:2]
  out_h, out_w = (output_size(size, k, stride) for size, k in zip(padded.shape[1:3], (kh, kw)))
  out = None
  for tap, weights in zip(windows(padded, (kh, kw), stride, out_h, out_w),
                          kernel.reshape(kh * kw, -1)):
    term = tap * weights
    out = term if out is None else out + term
  return out


# Bytes of padded input per slice of the batch in the kernel gradient: slices that stay in a
# core's L2 cache were fastest on XLA:CPU (measured 128 KiB-1 MiB on an AMD EPYC).
_KERNEL_GRAD_SLICE_BYTES = 256 << 10


def _kernel_grad(padded: jax.Array, grad_out: jax.Array, kernel_shape: tuple[int, int],
                 stride: int) -> jax.Array:
  """d(loss)/d(kernel): per tap, sum over batch and space of window * output gradient."""
  n, out_h, out_w, channels = grad_out.shape
  per_image = padded[0].size * padded.dtype.itemsize
  num_slices = max(1, min(n, n * per_image // _KERNEL_GRAD_SLICE_BYTES))
  while n % num_slices:
    num_slices -= 1
  # Slice i holds images i, i + num_slices, ...: a data-sharded batch stays local to its device.
  padded = padded.reshape(n // num_slices, num_slices, *padded.shape[1:])
  grad_out = grad_out.reshape(n // num_slices, num_slices, out_h, out_w, channels)

  def add_slice(i, total):
    window = lax.dynamic_index_in_dim(padded, i, 1, keepdims=False)
    grad = lax.dynamic_index_in_dim(grad_out, i, 1, keepdims=False)
    return total + jnp.stack([jnp.sum(tap * grad, axis=(0, 1, 2))
                              for tap in windows(window, kernel_shape, stride, out_h, out_w)])

  total = lax.fori_loop(0, num_slices, add_slice,
                        jnp.zeros((kernel_shape[0] * kernel_shape[1], channels), grad_out.dtype))
  return total.reshape(*kernel_shape, 1, channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shifted_vjp(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  return _shifted(x, kernel, stride, pads)


def _shifted_vjp_forward(x, kernel, stride, pads):
  # The padded input is kept for the kernel gradient rather than padded a second time.
  padded = pad_spatially(x, pads)
  return _shifted_padded(padded, kernel, stride), (padded, kernel)


def _input_grad(grad_out: jax.Array, kernel: jax.Array, stride: int, pads,
                input_size: tuple[int, int]) -> jax.Array:
  """d(loss)/d(input): the output gradient, dilated by the stride, correlated with the flipped
  kernel (a stride-1 shifted depthwise conv, instead of k*k padded scatters)."""
  spec = [(0, 0, 0)]
  for size, (low, _), out, k in zip(input_size, pads, grad_out.shape[1:3], kernel.shape[:2]):
    before = k - 1 - low
    spec.append((before, size + k - 1 - before - ((out - 1) * stride + 1), stride - 1))
  spec.append((0, 0, 0))
  dilated = lax.pad(grad_out, jnp.zeros((), grad_out.dtype), spec)
  return _shifted_padded(dilated, kernel[::-1, ::-1], 1)


def _shifted_vjp_backward(stride, pads, residuals, grad_out):
  padded, kernel = residuals
  input_size = tuple(size - low - high for size, (low, high) in zip(padded.shape[1:3], pads))
  return (_input_grad(grad_out, kernel, stride, pads, input_size),
          _kernel_grad(padded, grad_out, kernel.shape[:2], stride))


_shifted_vjp.defvjp(_shifted_vjp_forward, _shifted_vjp_backward)


def taps_reading_input(size: int, kernel: int, stride: int, pads) -> tuple[slice, tuple[int, int]]:
  """The taps of one axis that read the input for some output pixel, and the padding they need.

  On small maps, outer taps read only padding (under a 5x5 kernel a 2x2 map leaves 3x3 taps, a
  1x1 map only the centre): dropping them leaves the output unchanged and skips multiply-adds
  by zero. A negative high padding means input rows that no tap reads.
  """
  low, high = pads
  out = output_size(size + low + high, kernel, stride)
  first = max(0, low - (out - 1) * stride)
  last = min(kernel - 1, low + size - 1)
  new_low = low - first
  new_high = (out - 1) * stride + last - first + 1 - size - new_low
  return slice(first, last + 1), (new_low, new_high)


def drop_padding_taps(x: jax.Array, kernel: jax.Array, stride: int, pads):
  """(x, kernel, pads) without the taps that read only padding and the rows no tap reads."""
  (rows, (top, bottom)), (cols, (left, right)) = (
      taps_reading_input(size, k, stride, axis_pads)
      for size, k, axis_pads in zip(x.shape[1:3], kernel.shape[:2], pads))
  x = x[:, :x.shape[1] + min(bottom, 0), :x.shape[2] + min(right, 0)]
  return x, kernel[rows, cols], ((top, max(bottom, 0)), (left, max(right, 0)))


IMPLEMENTATIONS: dict[str, Callable[..., jax.Array]] = {
    'grouped': _grouped,
    'shifted': _shifted,
    'shifted_vjp': _shifted_vjp,
}
# The C++ kernel (mobilenet_jax/ops/kernels), where built: float32 on CPU only, so a candidate
# of 'auto' only there (and never in the table below, which serves where nothing is measured).
if kernels.available():
  IMPLEMENTATIONS['ffi'] = kernels.depthwise
# 'auto' where it is not measured (implementations.measuring()): the fastest measured on each
# backend by the benchmark; anything unlisted uses 'grouped'.
FASTEST_ON_BACKEND = {'cpu': 'shifted_vjp'}
CHOICES = ('auto', *dict.fromkeys((*IMPLEMENTATIONS, 'ffi')))


def check_implementation(name: str) -> str:
  """`name` if this process can run it, else a one-line ConfigError saying why not."""
  field = 'model.depthwise_implementation'
  errors.check_choice(field, name, CHOICES)
  if name == 'ffi' and name not in IMPLEMENTATIONS:
    raise errors.ConfigError(f"{field}='ffi' is not available: {kernels.unavailable_reason()}")
  if name == 'ffi' and jax.default_backend() != 'cpu':
    raise errors.ConfigError(f"{field}='ffi' runs on CPU only, not {jax.default_backend()}")
  return name


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
    x, kernel, pads = drop_padding_taps(x, kernel, self.strides, pads)
    check_implementation(self.implementation)
    candidates = {name: functools.partial(_bind, run, stride=self.strides, pads=pads)
                  for name, run in IMPLEMENTATIONS.items()
                  if name != 'ffi' or name == self.implementation
                  or (jax.default_backend() == 'cpu' and x.dtype == jnp.float32)}
    name = implementations.choose(
        'model.depthwise_implementation', self.implementation, candidates, FASTEST_ON_BACKEND,
        'grouped', op=f'depthwise stride {self.strides} pads {pads}',
        inputs=[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, kernel)],
        measure=not self.is_initializing(),
        version=f'kernels {kernels.version()}' if 'ffi' in candidates else '',
        differentiated=implementations.trained(self))
    return candidates[name](x, kernel)


def _bind(run: Callable[..., jax.Array], x: jax.Array, kernel: jax.Array, *, stride: int,
          pads) -> jax.Array:
  return run(x, kernel, stride, pads)
