"""Grouped batch norm (model.bn_group_size): each group of G consecutive examples normalised by
its own statistics, with the hand-written gradient; the same numbers on 1 or 8 devices, and no
cross-device reduction where G divides each device's share."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mobilenet_jax.ops import batch_norm
from mobilenet_jax.train import setup
from tests.train_fixtures import tiny_config

SHAPE, GROUP = (16, 3, 3, 4), 2
FIELDS = {'momentum': 0.9, 'epsilon': 1e-3}


def _reference(x, scale, bias, epsilon):
  """Grouped batch norm differentiated automatically: the groups' statistics by reshape."""
  groups = x.reshape(-1, GROUP, *x.shape[1:])
  axes = tuple(range(1, groups.ndim - 1))
  mean = jnp.mean(groups, axes, keepdims=True)
  var = jnp.var(groups, axes, keepdims=True)
  return ((groups - mean) / jnp.sqrt(var + epsilon) * scale + bias).reshape(x.shape)


def _inputs():
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), SHAPE)
  target = jax.random.normal(jax.random.key(1), SHAPE)
  params = {'scale': 0.5 + jax.random.uniform(jax.random.key(3), SHAPE[-1:]),
            'bias': jax.random.normal(jax.random.key(4), SHAPE[-1:])}
  return x, target, params


def _ours(params, x, target, group_size=GROUP):
  module = batch_norm.BatchNorm(False, group_size=group_size, **FIELDS)
  stats = {'mean': jnp.zeros(SHAPE[-1]), 'var': jnp.ones(SHAPE[-1])}
  y, updates = module.apply({'params': params, 'batch_stats': stats}, x, mutable=['batch_stats'])
  return jnp.sum(jnp.sin(y) * target), (y, updates['batch_stats'])


def test_grouped_batch_norm_and_its_gradient_match_the_groups_normalised_one_by_one():
  x, target, params = _inputs()
  (_, (y, stats)), grads = jax.value_and_grad(_ours, (0, 1), has_aux=True)(params, x, target)

  def reference_loss(params, x):
    y = _reference(x, params['scale'], params['bias'], FIELDS['epsilon'])
    return jnp.sum(jnp.sin(y) * target)
  want_grads = jax.grad(reference_loss, (0, 1))(params, x)
  np.testing.assert_allclose(y, _reference(x, params['scale'], params['bias'], 1e-3), atol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  groups = np.asarray(x).reshape(-1, GROUP, *SHAPE[1:])
  np.testing.assert_allclose(stats['mean'], 0.1 * groups.mean((1, 2, 3)).mean(0), rtol=1e-5)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * groups.var((1, 2, 3)).mean(0), rtol=1e-5)
  # Not the global batch norm: each group is normalised by its own statistics.
  (_, (y_global, _)) = _ours(params, x, target, group_size=0)
  assert np.abs(y - y_global).max() > 1e-2


def _compiled(devices, group_size=GROUP):
  mesh = Mesh(np.asarray(devices), ('data',))
  sharded, replicated = NamedSharding(mesh, P('data')), NamedSharding(mesh, P())
  step = jax.jit(jax.grad(lambda p, x, t: _ours(p, x, t, group_size)[0], (0, 1)),
                 in_shardings=(replicated, sharded, sharded))
  return step, sharded, replicated


def test_grouped_batch_norm_is_the_same_on_1_and_8_devices_and_needs_no_collective_there():
  x, target, params = _inputs()
  results, texts = [], []
  for devices, group_size in ((jax.devices()[:1], GROUP), (jax.devices()[:8], GROUP),
                              (jax.devices()[:8], 0)):
    step, sharded, replicated = _compiled(devices, group_size)
    args = (jax.device_put(params, replicated), jax.device_put(x, sharded),
            jax.device_put(target, sharded))
    results.append(step(*args))
    texts.append(step.lower(*args).compile().as_text())
  for got, want in zip(jax.tree.leaves(results[1]), jax.tree.leaves(results[0])):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # 16 examples over 8 devices: 2 each, one group of 2. Nothing moves examples, and the
  # statistics' all-reduce of the global batch norm is gone: what is left sums the parameters'
  # gradients over the batch.
  for op in ('all-to-all', 'collective-permute', 'all-gather'):
    assert op not in texts[1], op
  assert texts[1].count('all-reduce(') < texts[2].count('all-reduce(')


def test_model_bn_group_size_reaches_every_batch_norm_of_the_network():
  config = tiny_config(**{'model.bn_group_size': 4})
  images = jax.random.normal(jax.random.key(0), (8, 16, 16, 3))
  logits = {}
  # The group size changes no variable: one init serves the three networks.
  variables = jax.jit(setup.build_model(config).init)(jax.random.key(1), images[:1])
  for group_size in (0, 4, 8):
    config.model.bn_group_size = group_size
    model = setup.build_model(config)
    # Compiled: op by op, the three networks' many small ops cost more than compiling them.
    logits[group_size] = jax.jit(functools.partial(
        model.apply, train=True, mutable=['batch_stats']))(
            variables, images, rngs={'dropout': jax.random.key(2)})[0]
  scale = np.abs(logits[0]).max()  # small: the classifier starts near zero
  np.testing.assert_allclose(logits[8], logits[0], atol=1e-4 * scale)  # one group: the batch
  assert np.abs(logits[4] - logits[0]).max() > 0.05 * scale
