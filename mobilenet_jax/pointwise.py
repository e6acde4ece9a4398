"""1x1 convolution, with its implementation chosen per backend.

Both implementations hold the kernel as `nn.Conv` does, (1, 1, C_in, C_out), so checkpoints move
between them. On XLA:CPU a plain matrix multiply beats the convolution path for 1x1 kernels.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mobilenet_jax import implementations

IMPLEMENTATIONS = ('conv', 'matmul')
FASTEST_ON_BACKEND = {'cpu': 'matmul'}
CHOICES = ('auto', *IMPLEMENTATIONS)


def resolve_implementation(name: str) -> str:
  return implementations.resolve('model.pointwise_implementation', name, IMPLEMENTATIONS,
                                 FASTEST_ON_BACKEND, 'conv')


class PointwiseConv(nn.Module):
  """1x1 convolution without bias, stride 1."""
  features: int
  implementation: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (1, 1, x.shape[-1], self.features),
                        jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    if resolve_implementation(self.implementation) == 'matmul':
      return jnp.einsum('nhwc,cd->nhwd', x, kernel[0, 0])
    return lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
