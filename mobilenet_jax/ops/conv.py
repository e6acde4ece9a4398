"""Dense (not depthwise) convolutions without bias, with the implementation chosen per backend.

All implementations hold the kernel as `nn.Conv` does, (k, k, C_in, C_out), so checkpoints move
between them. On XLA:CPU a matrix multiply beats the convolution path for 1x1 convs (most of a
MobileNet's multiply-adds) and for the kernel gradient of the k x k stem, where XLA:CPU's
3-channel convolution backward costs more than the rest of the layer (as the k*k windows of the
input side by side times the output gradient, it is one matrix multiply). For k x k convs,
'matmul' keeps the convolution's forward pass and 'im2col' gathers the windows for the forward
pass too: on XLA:CPU (jaxlib 0.10.2, AVX-512) that is 2.2x faster for the 3-channel stem (16 vs
36 ms at 224/32) and slower for 32 input channels at 112 px (38 vs 24 ms); `auto` measures.

The 'matmul' paths carry their own gradient: differentiated automatically, XLA:CPU wrote each 1x1 conv's output
gradient out transposed (the batch-norm backward fused into that strided copy) before the
kernel-gradient multiply, 2-3x the time of the layer's whole backward pass at 112 px; the kernel
gradient here transposes the layer's input instead.
"""

from collections.abc import Callable

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mobilenet_jax.ops import implementations
from mobilenet_jax.ops.padding import output_size, pad_spatially, spatial_padding, windows

IMPLEMENTATIONS = ('conv', 'matmul', 'im2col')  # 'im2col' is 'matmul' for 1x1 convs
# 'auto' where it is not measured: the fastest measured on each backend (on an H200, jax 0.11,
# `matmul` won 47 of the 55 dense-conv shapes of V2, V3-Large and V4 Conv-S at 224/32:
# docs/benchmark_gpu_h200_auto.txt); anything unlisted uses 'conv'.
FASTEST_ON_BACKEND = {'cpu': 'matmul', 'gpu': 'matmul'}
CHOICES = ('auto', *IMPLEMENTATIONS)


def resolve_implementation(name: str) -> str:
  return implementations.resolve('model.conv_implementation', name, IMPLEMENTATIONS,
                                 FASTEST_ON_BACKEND, 'conv')


def _patches(x: jax.Array, k: int, stride: int, pads) -> jax.Array:
  """(N, H', W', k*k*C): the k*k windows of each output pixel, in the kernel's (i, j, c) order."""
  x = pad_spatially(x, pads)
  out_h, out_w = (output_size(size, k, stride) for size in x.shape[1:3])
  return jnp.concatenate(list(windows(x, (k, k), stride, out_h, out_w)), axis=-1)


def _kernel_grad(inputs: jax.Array, grad_out: jax.Array) -> jax.Array:
  """(P, D): inputs (..., P) contracted with grad_out (..., D) over all other axes."""
  # (P, rows) @ (rows, D): the transpose falls on the inputs, not on the output gradient.
  return jnp.dot(inputs.reshape(-1, inputs.shape[-1]).T,
                 grad_out.reshape(-1, grad_out.shape[-1]))


@jax.custom_vjp
def _matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """(..., P) @ (P, D)."""
  return jnp.einsum('...p,pd->...d', x, kernel)


def _matmul_forward(x, kernel):
  return _matmul(x, kernel), (x, kernel)


def _matmul_backward(residuals, grad_out):
  x, kernel = residuals
  return jnp.einsum('...d,pd->...p', grad_out, kernel), _kernel_grad(x, grad_out)


_matmul.defvjp(_matmul_forward, _matmul_backward)


def _convolve(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, (stride, stride), pads,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _convolve_with_matmul_grad(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  return _convolve(x, kernel, stride, pads)


def _convolve_forward(x, kernel, stride, pads):
  return _convolve(x, kernel, stride, pads), (x, kernel)


def _convolve_backward(stride, pads, residuals, grad_out):
  x, kernel = residuals
  kernel_grad = _kernel_grad(_patches(x, kernel.shape[0], stride, pads), grad_out)
  _, input_vjp = jax.vjp(lambda x: _convolve(x, kernel, stride, pads), x)
  return input_vjp(grad_out)[0], kernel_grad.reshape(kernel.shape)


_convolve_with_matmul_grad.defvjp(_convolve_forward, _convolve_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _im2col(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  """The k*k windows side by side times the kernel. Its backward pass is that of 'matmul': the
  windows are gathered again for the kernel gradient rather than kept (2.25x the input at
  stride 2)."""
  return jnp.einsum('...p,pd->...d', _patches(x, kernel.shape[0], stride, pads),
                    kernel.reshape(-1, kernel.shape[-1]))


def _im2col_forward(x, kernel, stride, pads):
  return _im2col(x, kernel, stride, pads), (x, kernel)


_im2col.defvjp(_im2col_forward, _convolve_backward)


class Conv(nn.Module):
  """k x k convolution with `features` outputs, without bias unless `use_bias` (V5's stem)."""
  features: int
  kernel_size: int = 1
  strides: int = 1
  padding: str = 'symmetric'
  implementation: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
  use_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.strides
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    pads = tuple(spatial_padding(size, k, s, self.padding) for size in x.shape[1:3])
    candidates = {'conv': functools.partial(_convolve, stride=s, pads=pads)}
    if k == 1 and s == 1:
      # One matrix multiply already: 'im2col' would be the same program, measured twice.
      candidates['matmul'] = functools.partial(_matmul_conv, features=self.features)
      if self.implementation == 'im2col':
        candidates['im2col'] = candidates['matmul']
    else:
      candidates['matmul'] = functools.partial(_convolve_with_matmul_grad, stride=s, pads=pads)
      candidates['im2col'] = functools.partial(_im2col, stride=s, pads=pads)
    name = implementations.choose(
        'model.conv_implementation', self.implementation, candidates, FASTEST_ON_BACKEND, 'conv',
        op=f'conv stride {s} pads {pads}',
        inputs=[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, kernel)],
        measure=not self.is_initializing(),
        differentiated=implementations.trained(self))
    y = candidates[name](x, kernel)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32).astype(
          y.dtype)
    return y


def _matmul_conv(x: jax.Array, kernel: jax.Array, *, features: int) -> jax.Array:
  return _matmul(x, kernel.reshape(-1, features))
