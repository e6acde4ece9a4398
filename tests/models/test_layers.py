"""Activations and squeeze-and-excite."""

import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.models import architecture
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
