"""Parameter and MAdd counts against the papers, the reference implementations and XLA."""

import math

import jax
import jax.numpy as jnp
import pytest

from configs import (v1, v2, v3_large, v3_small, v4_conv_large, v4_conv_medium, v4_conv_small,
                     v4_hybrid_large, v4_hybrid_medium, v5_300m, v5_base)
from mobilenet_jax.models import complexity
from mobilenet_jax.models.registry import create_model


def _counts(module, width=1.0, size=224, **model_fields):
  config = module.get_config()
  config.model.width_multiplier = width
  config.model.update(model_fields)
  model = create_model(config.model)
  return complexity.totals(complexity.layer_costs(model, size))


# Trainable parameters of torchvision / Keras, and MAdds of the papers (1000 classes, 224 px).
@pytest.mark.parametrize('module, params, madds', [
    (v1, 4_231_976, 569e6), (v2, 3_504_872, 300e6),
    (v3_large, 5_483_032, 217e6), (v3_small, 2_542_856, 56.5e6)])
def test_reference_counts(module, params, madds):
  got_params, got_madds = _counts(module)
  assert got_params == params
  assert abs(got_madds / madds - 1) < 0.01


# MobileNetV4 as timm 1.0.31 builds it (../shared/reference/mobilenet_v4_reference.md): trainable
# parameters exactly, MAdds (attention matmuls included) in millions at each train resolution.
@pytest.mark.parametrize('module, size, params, madds, attention', [
    (v4_conv_small, 224, 3_774_024, 186.0, 0), (v4_conv_small, 256, 3_774_024, 242.2, 0),
    (v4_conv_medium, 256, 9_715_512, 1080.2, 0), (v4_conv_large, 384, 32_590_864, 6376.2, 0),
    (v4_hybrid_medium, 256, 11_074_648, 1271.2, 41.9),
    (v4_hybrid_large, 384, 37_764_624, 7711.9, 339.7)],
    ids=lambda v: v.__name__.split('.')[-1] if hasattr(v, '__name__') else None)
def test_v4_counts(module, size, params, madds, attention):
  model = create_model(module.get_config().model)
  costs = complexity.layer_costs(model, size)
  got_params, got_madds = complexity.totals(costs)
  assert got_params == params
  assert round(got_madds / 1e6, 1) == madds
  # The attention matmuls' share, counted from the table: q k^T and weights v, per MQA block.
  shapes = {c.name: c.output_shape for c in costs}
  attention_madds = 0
  for i, layer in enumerate(model.architecture.layers):
    if layer.block == 'mqa':
      h, w, _ = shapes[f'mqa_{i}']
      kv_pixels = math.ceil(h / layer.kv_stride) * math.ceil(w / layer.kv_stride)
      attention_madds += 2 * h * w * kv_pixels * layer.heads * layer.key_dim
  assert round(attention_madds / 1e6, 1) == attention


# MobileNetV5 as timm 1.0.31 builds it at its input sizes: its parameter count, and PyTorch's
# FlopCounterMode on its model (flops / 2: convolutions, the attention's batched matmuls and the
# classifier), which the count here equals exactly (tests/interop/test_timm_v5.py measures it
# live). 300M is Gemma 3n's encoder, without a classifier. jax.eval_shape: nothing is compiled.
@pytest.mark.parametrize('module, size, params, madds, attention', [
    (v5_base, 256, 82_647_976, 20_051_804_160, 461_373_440),
    (v5_300m, 768, 294_126_912, 435_741_474_816, 47_903_145_984)],
    ids=lambda v: v.__name__.split('.')[-1] if hasattr(v, '__name__') else None)
def test_v5_counts_equal_timm(module, size, params, madds, attention):
  model = create_model(module.get_config().model)
  costs = complexity.layer_costs(model, size)
  assert complexity.totals(costs) == (params, madds)
  assert sum(c.madds for c in costs if c.name.startswith('mqa')) - sum(
      _kernel_madds(model, c) for c in costs if c.name.startswith('mqa')) == attention


def _kernel_madds(model, cost) -> int:
  """An MQA block's convolutions' multiply-adds (its query, key, value and output 1x1 convs and
  the key/value down-sampling depthwise convs), from the table."""
  layer = model.architecture.layers[int(cost.name.split('_')[1])]
  h, w, c = cost.output_shape
  kv = math.ceil(h / layer.kv_stride) * math.ceil(w / layer.kv_stride)
  down = 2 * kv * layer.kernel ** 2 * layer.in_width if layer.kv_stride > 1 else 0
  return (h * w * layer.in_width * layer.heads * layer.key_dim + 2 * kv * layer.in_width
          * layer.key_dim + h * w * layer.heads * layer.key_dim * c + down)


# timm's narrower V4s: the stem stays at its width (`model.scale_stem` False), the 1280-wide
# head too; parameter counts of timm's `mobilenetv4_conv_small_050`, `_035`, `hybrid_medium_075`.
@pytest.mark.parametrize('module, width, params', [
    (v4_conv_small, 0.5, 2_238_952), (v4_conv_small, 0.35, 1_905_384),
    (v4_hybrid_medium, 0.75, 7_313_528)])
def test_v4_width_multiplier_keeps_stem_and_head(module, width, params):
  assert _counts(module, width)[0] == params


# MobileNetV1 Tables 6-7 (MAdds in millions, params in millions, as printed).
@pytest.mark.parametrize('width, size, madds, params', [
    (1.0, 224, 569, 4.2), (0.75, 224, 325, 2.6), (0.5, 224, 149, 1.3), (0.25, 224, 41, 0.5),
    (1.0, 192, 418, 4.2), (1.0, 160, 290, 4.2), (1.0, 128, 186, 4.2)])
def test_v1_width_and_resolution_grid(width, size, madds, params):
  got_params, got_madds = _counts(v1, width, size)
  assert abs(got_madds / 1e6 - madds) < 1  # the paper rounds some figures and truncates others
  assert round(got_params / 1e6, 1) == params


# MobileNetV2 released checkpoints (MAdds in millions); V3 Table 3 at alpha 0.75.
@pytest.mark.parametrize('module, width, madds', [
    (v2, 1.4, 582), (v2, 0.75, 209), (v2, 0.5, 97), (v2, 0.35, 59), (v3_large, 0.75, 155)])
def test_width_multiplier_grid(module, width, madds):
  assert round(_counts(module, width)[1] / 1e6) == madds


def test_params_do_not_depend_on_resolution_and_madds_scale_with_area():
  p224, m224 = _counts(v3_large)
  p160, m160 = _counts(v3_large, size=160)
  assert p160 == p224
  # The head after pooling costs the same at any size; everything before scales with area.
  assert abs(m160 / m224 - (160 / 224) ** 2) < 0.02


def test_per_layer_costs_add_up_and_match_the_parameter_tree():
  model = create_model(v2.get_config().model)
  costs = complexity.layer_costs(model, 96)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 96, 96, 3))))
  assert complexity.count_params(variables['params']) == complexity.totals(costs)[0]
  assert costs[0].name == 'conv_0' and costs[0].output_shape == (48, 48, 32)
  assert costs[0].madds == 48 * 48 * 3 * 3 * 3 * 32
  assert costs[-1].name == 'classifier' and costs[-1].madds == 1280 * 1000


# V1's 'ds' rows and V3-Large's 'ir' rows with and without SE hold every layer kind of V2 and
# V3-Small too: their compiles (a full model each) run with the slow tests.
@pytest.mark.parametrize('module', [v1, pytest.param(v2, marks=pytest.mark.slow), v3_large,
                                    pytest.param(v3_small, marks=pytest.mark.slow)],
                         ids=lambda m: getattr(m, '__name__', str(m)).split('.')[-1])
def test_madds_agree_with_xla_cost_analysis(module):
  """XLA counts a multiply-add as 2 flops, plus a few for batch norm and activations."""
  config = module.get_config()
  config.model.depthwise_implementation = 'grouped'
  model = create_model(config.model)
  images = jnp.zeros((1, 96, 96, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  cost = jax.jit(model.apply).lower(variables, images).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  madds = complexity.totals(complexity.layer_costs(model, 96))[1]
  assert 1.0 <= cost['flops'] / (2 * madds) <= 1.06
