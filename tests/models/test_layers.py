"""Activations, squeeze-and-excite and stochastic depth."""

import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.models import architecture
from mobilenet_jax.models import layers
from mobilenet_jax.models.layers import ACTIVATIONS, SqueezeExcite


def test_every_table_activation_has_a_function():
  assert tuple(ACTIVATIONS) == architecture.ACTIVATIONS


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


def test_drop_path_drops_whole_examples_and_scales_the_kept_ones():
  x = jnp.ones((256, 2, 2, 3))
  drop = layers.DropPath(0.25, deterministic=False)
  key = jax.random.key(3)
  y = drop.apply({}, x, rngs={'dropout': key})
  per_example = y.reshape(256, -1)
  kept = per_example[:, 0] > 0
  np.testing.assert_allclose(per_example[kept], 1 / 0.75, rtol=1e-6)  # whole, rescaled
  np.testing.assert_array_equal(per_example[~kept], 0.0)
  assert 0.15 < 1 - kept.mean() < 0.35
  np.testing.assert_array_equal(drop.apply({}, x, rngs={'dropout': key}), y)  # same key, same mask
  assert not np.array_equal(drop.apply({}, x, rngs={'dropout': jax.random.key(4)}), y)
  np.testing.assert_array_equal(layers.DropPath(0.25).apply({}, x), x)  # eval: identity


def test_gelu_is_the_exact_form():
  x = jnp.linspace(-4, 4, 101)
  exact = 0.5 * x * (1 + jax.scipy.special.erf(x / np.sqrt(2)))
  np.testing.assert_allclose(layers.ACTIVATIONS['gelu'](x), exact, atol=1e-6)
