"""Dense conv implementations agree with the convolution and hold nn.Conv's parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from mobilenet_jax.ops import conv
from mobilenet_jax.ops.padding import PADDINGS
from tests.ops.agreement import assert_implementations_agree


@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('kernel, stride', [(1, 1), (3, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize('size', [7, pytest.param(8, marks=pytest.mark.slow)])
def test_conv_implementations_agree(padding, kernel, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  assert_implementations_agree(
      {impl: conv.Conv(5, kernel, stride, padding, impl) for impl in conv.IMPLEMENTATIONS},
      'conv', x)


def test_conv_params_are_nn_conv_params():
  x = jnp.zeros((1, 8, 8, 3))
  ours = conv.Conv(4, 3, 2).init(jax.random.key(0), x)
  flax_conv = nn.Conv(4, (3, 3), (2, 2), use_bias=False).init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, flax_conv)
