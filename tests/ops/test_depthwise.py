"""Every depthwise implementation computes the grouped convolution, also with padding taps dropped."""

import jax
import numpy as np
import pytest

from mobilenet_jax.ops import depthwise
from mobilenet_jax.ops.padding import PADDINGS, spatial_padding
from tests.ops.agreement import assert_implementations_agree


@pytest.mark.parametrize('padding', PADDINGS)
@pytest.mark.parametrize('kernel', [3, 5])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('size', [7, pytest.param(8, marks=pytest.mark.slow)])
def test_depthwise_implementations_agree(padding, kernel, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 6))
  assert_implementations_agree(
      {impl: depthwise.DepthwiseConv(kernel, stride, padding, impl)
       for impl in depthwise.IMPLEMENTATIONS}, 'grouped', x)


@pytest.mark.parametrize('padding', ['symmetric', pytest.param('same', marks=pytest.mark.slow)])
@pytest.mark.parametrize('kernel, stride, height, width', [
    (5, 1, 2, 3), (5, 2, 1, 1), (3, 2, 4, 4)])
def test_dropping_padding_taps_changes_nothing(padding, kernel, stride, height, width):
  """On maps smaller than the kernel, every implementation (which drops the taps that read only
  padding) matches the full grouped convolution, gradients included (dropped taps get 0)."""
  x = jax.random.normal(jax.random.key(0), (2, height, width, 4))
  module = depthwise.DepthwiseConv(kernel, stride, padding, 'shifted_vjp')
  params = module.init(jax.random.key(1), x)
  pads = tuple(spatial_padding(size, kernel, stride, padding) for size in (height, width))

  def full(p, x):
    return depthwise.IMPLEMENTATIONS['grouped'](x, p['params']['kernel'], stride, pads)

  want, want_vjp = jax.vjp(full, params, x)
  cotangent = jax.random.normal(jax.random.key(2), want.shape)
  for impl in depthwise.IMPLEMENTATIONS:
    got, got_vjp = jax.vjp(depthwise.DepthwiseConv(kernel, stride, padding, impl).apply,
                           params, x)
    for g, w in zip(jax.tree.leaves((got, *got_vjp(cotangent))),
                    jax.tree.leaves((want, *want_vjp(cotangent)))):
      np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5, err_msg=impl)


@pytest.mark.parametrize('size, kernel, stride, taps', [
    (2, 5, 1, slice(1, 4)), (1, 5, 1, slice(2, 3)), (2, 5, 2, slice(2, 4)), (4, 5, 2, slice(0, 5))])
def test_taps_reading_input(size, kernel, stride, taps):
  pads = spatial_padding(size, kernel, stride, 'symmetric')
  assert depthwise.taps_reading_input(size, kernel, stride, pads)[0] == taps
