"""Channel rounding, activations, batch norm, squeeze-and-excite and the conv implementations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax import batch_norm, conv, depthwise
from mobilenet_jax.layers import ACTIVATIONS, SqueezeExcite, make_divisible


@pytest.mark.parametrize('value, expected', [
    (16, 16), (16 * 0.75, 16), (16 * 0.5, 8), (32 * 0.35, 16), (24 * 0.35, 8),
    (96 * 0.75, 72), (18, 24),  # 16 would be under 90% of 18
    (1280 * 1.4, 1792), (3, 8), (0.1, 8), (100, 104), (44, 48),
])
def test_make_divisible(value, expected):
  assert make_divisible(value) == expected


def test_make_divisible_never_below_90_percent_and_divisible():
  for v in np.linspace(1, 2000, 997):
    r = make_divisible(v)
    assert r % 8 == 0 and r >= 0.9 * v and r >= 8


def test_make_divisible_other_divisor():
  assert make_divisible(7, divisor=4) == 8
  assert make_divisible(9, divisor=4) == 12  # 8 would be under 90% of 9


def test_activations():
  x = jnp.array([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 7.0])
  np.testing.assert_allclose(ACTIVATIONS['relu6'](x), [0, 0, 0, 0, 1, 3, 6])
  np.testing.assert_allclose(ACTIVATIONS['hard_sigmoid'](x), [0, 0, 1 / 3, 0.5, 2 / 3, 1, 1],
                             rtol=1e-6)
  np.testing.assert_allclose(ACTIVATIONS['hard_swish'](x), x * np.clip(x + 3, 0, 6) / 6,
                             rtol=1e-6)
  np.testing.assert_allclose(ACTIVATIONS['relu'](x), np.maximum(x, 0))


def test_squeeze_excite_gates_each_channel():
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 16))
  se = SqueezeExcite(squeeze_width=8)
  variables = se.init(jax.random.key(1), x)
  assert variables['params']['reduce']['kernel'].shape == (16, 8)
  assert variables['params']['expand']['kernel'].shape == (8, 16)
  y = se.apply(variables, x)
  gate = y / x  # one gate per image and channel, shared over space, in [0, 1]
  np.testing.assert_allclose(gate, jnp.broadcast_to(gate[:, :1, :1], gate.shape), rtol=1e-4)
  assert float(gate.min()) >= 0 and float(gate.max()) <= 1


def _assert_implementations_agree(modules: dict, reference: str, x: jax.Array):
  """Same parameter tree, outputs and gradients (parameters and input) within 1e-5."""
  params = modules[reference].init(jax.random.key(1), x)
  cotangent = None
  results = {}
  for impl, module in modules.items():
    assert jax.tree.map(jnp.shape, module.init(jax.random.key(1), x)) == jax.tree.map(
        jnp.shape, params)
    y, vjp = jax.vjp(lambda p, x, m=module: m.apply(p, x), params, x)
    if cotangent is None:
      cotangent = jax.random.normal(jax.random.key(2), y.shape)
    results[impl] = (y, *vjp(cotangent))
  want_all = results.pop(reference)
  for impl, result in results.items():
    for got, want in zip(jax.tree.leaves(result), jax.tree.leaves(want_all)):
      np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=impl)


@pytest.mark.parametrize('padding', depthwise.PADDINGS)
@pytest.mark.parametrize('kernel', [3, 5])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('size', [7, 8])
def test_depthwise_implementations_agree(padding, kernel, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 6))
  _assert_implementations_agree(
      {impl: depthwise.DepthwiseConv(kernel, stride, padding, impl)
       for impl in depthwise.IMPLEMENTATIONS}, 'grouped', x)


@pytest.mark.parametrize('padding', depthwise.PADDINGS)
@pytest.mark.parametrize('kernel, stride, height, width', [
    (5, 1, 2, 3), (5, 2, 1, 1), (3, 2, 4, 4)])
def test_dropping_padding_taps_changes_nothing(padding, kernel, stride, height, width):
  """On maps smaller than the kernel, every implementation (which drops the taps that read only
  padding) matches the full grouped convolution, gradients included (dropped taps get 0)."""
  x = jax.random.normal(jax.random.key(0), (2, height, width, 4))
  module = depthwise.DepthwiseConv(kernel, stride, padding, 'shifted_vjp')
  params = module.init(jax.random.key(1), x)
  pads = tuple(depthwise.spatial_padding(size, kernel, stride, padding) for size in (height, width))

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
  pads = depthwise.spatial_padding(size, kernel, stride, 'symmetric')
  assert depthwise.taps_reading_input(size, kernel, stride, pads)[0] == taps


@pytest.mark.parametrize('padding', depthwise.PADDINGS)
@pytest.mark.parametrize('kernel, stride', [(1, 1), (3, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize('size', [7, 8])
def test_conv_implementations_agree(padding, kernel, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  _assert_implementations_agree(
      {impl: conv.Conv(5, kernel, stride, padding, impl) for impl in conv.IMPLEMENTATIONS},
      'conv', x)


def test_conv_params_are_nn_conv_params():
  x = jnp.zeros((1, 8, 8, 3))
  ours = conv.Conv(4, 3, 2).init(jax.random.key(0), x)
  flax_conv = nn.Conv(4, (3, 3), (2, 2), use_bias=False).init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, flax_conv)


@pytest.mark.parametrize('size, stride, kernel, expected', [
    (8, 2, 3, (0, 1)), (7, 2, 3, (1, 1)), (8, 1, 5, (2, 2)), (8, 2, 5, (1, 2))])
def test_same_padding_matches_tensorflow(size, stride, kernel, expected):
  assert depthwise.spatial_padding(size, kernel, stride, 'same') == expected
  # The output has ceil(size / stride) pixels, as TensorFlow's 'SAME' gives.
  lo, hi = expected
  assert (size + lo + hi - kernel) // stride + 1 == -(-size // stride)


def test_auto_implementation_is_a_known_one():
  assert depthwise.resolve_implementation('auto') in depthwise.IMPLEMENTATIONS
  assert depthwise.resolve_implementation('grouped') == 'grouped'
  assert conv.resolve_implementation('auto') in conv.IMPLEMENTATIONS


@pytest.mark.parametrize('shape', [(4, 5, 3, 8), (6, 7)])
def test_batch_norm_matches_flax(shape):
  """Same variables, outputs, updated statistics and gradients (train mode), and eval outputs."""
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), shape)
  target = jax.random.normal(jax.random.key(1), shape)
  fields = {'momentum': 0.9, 'epsilon': 1e-3}
  modules = {'flax': nn.BatchNorm, 'ours': batch_norm.BatchNorm}
  variables = modules['flax'](False, **fields).init(jax.random.key(2), x)
  assert jax.tree.map(jnp.shape, batch_norm.BatchNorm(False, **fields).init(
      jax.random.key(2), x)) == jax.tree.map(jnp.shape, variables)
  params = {'scale': 0.5 + jax.random.uniform(jax.random.key(3), shape[-1:]),
            'bias': jax.random.normal(jax.random.key(4), shape[-1:])}
  results = {}
  for name, module in modules.items():
    def loss(params, x, module=module(use_running_average=False, **fields)):
      y, updates = module.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                                mutable=['batch_stats'])
      return jnp.sum(jnp.sin(y) * target), (y, updates['batch_stats'])
    (_, (y, stats)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
    frozen = module(use_running_average=True, **fields)
    y_eval = frozen.apply({'params': params, 'batch_stats': stats}, x)
    results[name] = (y, stats, grads, y_eval)
  for want, got in zip(*(jax.tree.leaves(results[name]) for name in modules)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.abs(results['ours'][2][1]).max() > 1e-3  # the input gradient is not trivially 0
