"""Built networks: output shapes, residual and SE placement, train mode, bf16 compute."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import v1, v2, v3_large, v3_small
from mobilenet_jax.models import architecture
from mobilenet_jax.models.blocks import InvertedResidual
from mobilenet_jax.models.layers import ConvBN
from mobilenet_jax.models.registry import create_model

SHIPPED = [(v1, None), (v1, 'small_image'), (v2, None), (v2, 'small_image'),
           (v3_large, None), (v3_large, 'minimalistic'), (v3_large, 'small_image'),
           (v3_small, None), (v3_small, 'minimalistic'), (v3_small, 'small_image')]


def _tiny(module, arg=None, **model_fields):
  config = module.get_config(arg)
  config.model.width_multiplier = 0.25
  config.model.num_classes = 10
  config.model.update(model_fields)
  return config


@pytest.mark.parametrize('module, arg', SHIPPED, ids=lambda v: getattr(v, '__name__', v))
def test_every_shipped_config_has_the_right_output_shape(module, arg):
  model = create_model(_tiny(module, arg).model)
  size = 28 if arg == 'small_image' else 40  # 40 px: not a multiple of the total stride
  images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  logits, variables = jax.eval_shape(model.init_with_output, jax.random.key(1), images)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert set(variables) == {'params', 'batch_stats'}


# Every family's logits are also compared with timm's or torchvision's in the default run.
@pytest.mark.parametrize('module', [pytest.param(v1, marks=pytest.mark.slow),
                                    pytest.param(v2, marks=pytest.mark.slow),
                                    pytest.param(v3_large, marks=pytest.mark.slow)],
                         ids=lambda m: getattr(m, '__name__', m))
def test_each_family_computes_finite_logits(module):
  model = create_model(_tiny(module).model)
  images = jax.random.uniform(jax.random.key(0), (2, 40, 40, 3))
  logits, _ = jax.jit(model.init_with_output)(jax.random.key(1), images)
  assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()


def _block(expanded, out, stride, in_width, se_width=0):
  layer = architecture.Layer('ir', 3, in_width, expanded, out, se_width, 'relu', stride)
  conv_bn = functools.partial(ConvBN, norm=functools.partial(
      __import__('flax').linen.BatchNorm, use_running_average=True))
  return InvertedResidual(layer, conv_bn)


@pytest.mark.parametrize('in_width, out, stride, residual', [
    (16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)])
def test_residual_only_when_resolution_and_width_are_kept(in_width, out, stride, residual):
  block = _block(64, out, stride, in_width)
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, in_width))
  variables = block.init(jax.random.key(1), x)
  # With the projection's batch norm zeroed, the block's output is its shortcut alone.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.zeros_like(p) if 'project' in str(path) and 'bn' in str(path) else p,
      variables['params'])
  y = block.apply({**variables, 'params': params}, x)
  np.testing.assert_allclose(y, x if residual else jnp.zeros_like(y), atol=1e-6)


def test_se_and_expansion_placement_follow_the_table():
  model = create_model(v3_large.get_config().model)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  arch = model.architecture
  for i, layer in enumerate(arch.layers):
    params = variables['params'][f'{layer.block}_{i}']
    if layer.block != 'ir':
      continue
    assert ('se' in params) == bool(layer.se_width)
    if layer.se_width:
      assert params['se']['reduce']['kernel'].shape == (layer.expanded, layer.se_width)
    assert ('expand' in params) == (layer.expanded != layer.in_width)
    assert params['depthwise']['conv']['kernel'].shape == (layer.kernel, layer.kernel, 1,
                                                           layer.expanded)
  assert 'expand' not in variables['params']['ir_1']  # exp 16 == input 16


@pytest.fixture(scope='module')
def tiny_v3_small():
  model = create_model(_tiny(v3_small, dropout_rate=0.5).model)
  images = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
  return model, images, jax.jit(model.init)(jax.random.key(1), images)


def test_train_mode_updates_batch_stats_and_uses_dropout(tiny_v3_small):
  model, images, variables = tiny_v3_small
  apply = jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))
  logits_a, updates = apply(variables, images, rngs={'dropout': jax.random.key(2)})
  logits_b, _ = apply(variables, images, rngs={'dropout': jax.random.key(3)})
  assert np.isfinite(np.asarray(logits_a)).all()
  assert not np.allclose(logits_a, logits_b)  # dropout differs with the key
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'],
                         updates['batch_stats'])
  assert all(jax.tree.leaves(changed))


def test_bfloat16_compute_keeps_float32_params(tiny_v3_small):
  model, images, variables = tiny_v3_small
  bf16 = model.clone(dtype=jnp.bfloat16)
  assert {leaf.dtype for leaf in jax.tree.leaves(
      jax.eval_shape(bf16.init, jax.random.key(1), images))} == {jnp.dtype('float32')}
  apply = jax.jit(functools.partial(bf16.apply, capture_intermediates=True,
                                    mutable=['intermediates']))
  logits, state = apply(variables, images)
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
  assert state['intermediates']['ir_5']['__call__'][0].dtype == jnp.bfloat16
  reference = jax.jit(model.apply)(variables, images)
  np.testing.assert_allclose(logits, reference, atol=0.05, rtol=0.05)
