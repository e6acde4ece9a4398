"""Schedules, the linear scaling rule, TensorFlow's RMSProp and the weight-decay mask."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mobilenet_jax.train import optim
from mobilenet_jax.models.registry import create_model
from tests.train_fixtures import tiny_config


def test_linear_scaling_rule():
  config = tiny_config(learning_rate=0.1, lr_base_batch_size=256, batch_size=512)
  assert optim.base_learning_rate(config) == pytest.approx(0.2)


def test_warmup_then_cosine():
  config = tiny_config(learning_rate=0.4, lr_base_batch_size=8, batch_size=8, schedule='cosine',
                       warmup_epochs=1.0)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=10, num_steps=110)
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)],
                             [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)


def test_warmup_then_exponential_staircase():
  config = tiny_config(learning_rate=0.064, lr_base_batch_size=8, batch_size=8,
                       schedule='exponential', warmup_epochs=0.5, decay_epochs=2.0,
                       decay_rate=0.973)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=10, num_steps=1000)
  # Warmup over 5 steps, then x0.973 every 20 steps counted from the end of warmup.
  np.testing.assert_allclose(
      [lr(0), lr(5), lr(24), lr(25), lr(45), lr(105)],
      [0.0, 0.064, 0.064, 0.064 * 0.973, 0.064 * 0.973 ** 2, 0.064 * 0.973 ** 5], rtol=1e-5)


def test_paper_v3_decay_of_one_hundredth_every_three_epochs():
  config = tiny_config(learning_rate=0.1, lr_base_batch_size=8, batch_size=8,
                       schedule='exponential', warmup_epochs=0.0, decay_epochs=3.0,
                       decay_rate=0.01)
  lr = optim.learning_rate_schedule(config, steps_per_epoch=100, num_steps=1000)
  np.testing.assert_allclose([lr(299), lr(300), lr(600)], [0.1, 1e-3, 1e-5], rtol=1e-5)


def test_rmsprop_is_tensorflows():
  """ms = 0.9 ms + 0.1 g^2; mom = 0.9 mom + lr g / sqrt(ms + eps); w -= mom."""
  config = tiny_config(optimizer='rmsprop', weight_decay=0.0, epsilon=0.002,
                       grad_clip_norm=0.0)
  lr = 0.01
  tx = optim.create_optimizer(config, optax.constant_schedule(lr))
  w = jnp.array([1.0, -2.0])
  state = tx.init(w)
  ms, mom, expected = np.zeros(2), np.zeros(2), np.array(w)
  for g in (np.array([0.5, -1.0]), np.array([0.2, 0.3])):
    updates, state = tx.update(jnp.asarray(g), state, w)
    w = optax.apply_updates(w, updates)
    ms = 0.9 * ms + 0.1 * g ** 2
    mom = 0.9 * mom + lr * g / np.sqrt(ms + 0.002)
    expected = expected - mom
    np.testing.assert_allclose(w, expected, rtol=1e-5)


def _tiny_params():
  model = create_model(tiny_config().model)
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))['params']


def test_weight_decay_mask_skips_batch_norm_and_biases():
  mask = optim.decay_mask(_tiny_params())
  flat = {'/'.join(k.key for k in path): v
          for path, v in jax.tree_util.tree_leaves_with_path(mask)}
  assert flat['conv_0/conv_bn/conv/kernel'] and flat['ir_1/depthwise/conv/kernel']
  assert flat['ir_1/se/reduce/kernel'] and flat['classifier/kernel']
  assert not flat['conv_0/conv_bn/bn/scale'] and not flat['conv_0/conv_bn/bn/bias']
  assert not flat['ir_1/se/reduce/bias'] and not flat['classifier/bias']


@pytest.mark.parametrize('optimizer', optim.OPTIMIZERS)
def test_weight_decay_touches_only_kernels(optimizer):
  params = jax.tree.map(lambda s: jnp.ones(s.shape), _tiny_params())
  config = tiny_config(optimizer=optimizer, weight_decay=0.1, grad_clip_norm=1.0)
  tx = optim.create_optimizer(config, optax.constant_schedule(0.1))
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  moved = jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)
  assert moved == optim.decay_mask(params)


@pytest.mark.parametrize('optimizer', ['adamw', 'sgd'])
def test_fine_tuning_scales_the_body_learning_rate_and_not_the_classifier(optimizer):
  params = {'stem': {'kernel': jnp.ones((3, 3)), 'bias': jnp.ones(3)},
            'classifier': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  moved = {}
  for scale in (1.0, 0.1, 0.0):
    config = tiny_config(optimizer=optimizer, weight_decay=0.0, body_learning_rate_scale=scale)
    tx = optim.create_optimizer(config, optax.constant_schedule(0.5))
    updates, _ = tx.update(grads, tx.init(params), params)
    moved[scale] = jax.tree.map(lambda u: float(jnp.abs(u).max()), updates)
  for part in ('kernel', 'bias'):
    assert moved[1.0]['classifier'][part] == moved[0.1]['classifier'][part] == \
        moved[0.0]['classifier'][part] > 0
    assert moved[0.1]['stem'][part] == pytest.approx(0.1 * moved[1.0]['stem'][part])
    assert moved[0.0]['stem'][part] == 0
