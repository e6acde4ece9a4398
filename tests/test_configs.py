"""Configs as data: every field validated by the registry, variants, command-line overrides."""

import json
import subprocess
import sys

import pytest

from configs import (v1, v2, v3_large, v3_small, v4_conv_large, v4_conv_medium, v4_conv_small,
                     v4_hybrid_large, v4_hybrid_medium, v5_300m, v5_base)
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.models import architecture
from mobilenet_jax.models.registry import create_model

ALL_CONFIGS = [v1, v2, v3_large, v3_small, v4_conv_small, v4_conv_medium, v4_conv_large,
               v4_hybrid_medium, v4_hybrid_large]
V5_CONFIGS = [v5_base, v5_300m]


@pytest.mark.parametrize('module', ALL_CONFIGS, ids=lambda m: m.__name__.split('.')[-1])
def test_configs_share_the_base_and_build(module):
  config = module.get_config()
  assert config.model.name == 'mobilenet' and config.input.image_size in (224, 256, 384)
  assert create_model(config.model).num_classes == 1000


@pytest.mark.parametrize('module, size, num_classes', [(v5_base, 256, 1000), (v5_300m, 768, 0)],
                         ids=lambda m: getattr(m, '__name__', '').split('.')[-1])
def test_v5_configs_build_as_timm_defines_them(module, size, num_classes):
  """timm's input sizes; 300M is Gemma 3n's encoder, without a classifier, as timm's default."""
  config = module.get_config()
  assert config.input.image_size == size
  model = create_model(config.model)
  assert model.num_classes == num_classes and model.architecture.head == 'msfa'
  # The MSFA fuses the ends of the 1/16 and 1/32 stages (timm's feature_info[-2:]).
  high, low = model.architecture.fusion_taps
  layers = model.architecture.layers
  assert layers[high + 1].stride == 2 and all(layer.stride == 1 for layer in layers[high + 2:])
  assert low == len(layers) - 1


@pytest.mark.parametrize('module', ALL_CONFIGS[4:] + V5_CONFIGS,
                         ids=lambda m: m.__name__.split('.')[-1])
@pytest.mark.parametrize('variant, size, stride', [('fashion_mnist', 28, 16),
                                                   ('small_image', 32, 8)])
def test_v4_v5_small_image_variants(module, variant, size, stride):
  config = module.get_config(variant)
  arch = architecture.resolve(config.model)
  assert (config.input.image_size, arch.total_stride) == (size, stride)
  assert config.name == f'{module.__name__.split(".")[-1]}:{variant}'


@pytest.mark.parametrize('field, value, message', [
    ('name', 'resnet50', "model.name='resnet50' is not allowed; choose one of: 'mobilenet'"),
    ('dtype', 'float16', "model.dtype='float16' is not allowed; choose one of: 'float32', "
                         "'bfloat16'"),
    ('padding', 'valid', "model.padding='valid' is not allowed"),
    ('depthwise_implementation', 'fft', "model.depthwise_implementation='fft' is not allowed"),
    ('se_gate', 'sigmoid', "model.se_gate='sigmoid' is not allowed"),
    ('num_classes', -1, 'model.num_classes=-1 is not allowed; it must be an integer >= 0'),
    ('norm', 'layer_norm', "model.norm='layer_norm' is not allowed; choose one of: "
                           "'batch_norm', 'rms_norm'"),
    ('head', 'mlp', "model.head='mlp' is not allowed; choose one of: 'pool', 'msfa'"),
    ('dropout_rate', 1.0, 'model.dropout_rate=1.0 is not allowed; it must be a number in [0, 1)'),
    ('bn_momentum', 1.5, 'model.bn_momentum=1.5 is not allowed'),
    ('width_multiplier', 0.0, 'model.width_multiplier=0.0 is not allowed'),
    ('drop_path_rate', 1.0, 'model.drop_path_rate=1.0 is not allowed; it must be a number in '
                            '[0, 1)'),
    ('layer_scale_init', -1e-5, 'model.layer_scale_init=-1e-05 is not allowed'),
])
def test_registry_rejects_bad_fields(field, value, message):
  config = v3_small.get_config()
  config.model[field] = value
  with pytest.raises(ConfigError) as error:
    create_model(config.model)
  assert message in str(error.value) and '\n' not in str(error.value)


def test_unknown_variant():
  with pytest.raises(ConfigError, match="config variant 'minimalistic' is not allowed for v2"):
    v2.get_config('minimalistic')


def _summary(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.summary', *args],
                        capture_output=True, text=True, timeout=120)


def test_summary_applies_command_line_overrides():
  result = _summary('--config=configs/v3_large.py:minimalistic', '--json',
                    '--config.model.width_multiplier=0.75', '--config.input.image_size=160',
                    '--config.model.num_classes=10')
  assert result.returncode == 0, result.stderr
  record = json.loads(result.stdout)
  assert record['config'] == 'v3_large:minimalistic'
  assert (record['width_multiplier'], record['image_size'], record['num_classes']) == (0.75, 160, 10)
  assert set(record) == {'config', 'width_multiplier', 'image_size', 'num_classes', 'params',
                         'madds', 'features'}
  # V3-Large's backbone at width 0.75, as timm's features_only: the last block at each stride.
  assert [(f['channels'], f['stride'], f['module']) for f in record['features']] == [
      (16, 2, 'ir_1'), (24, 4, 'ir_3'), (32, 8, 'ir_6'), (88, 16, 'ir_12'), (720, 32, 'conv_16')]


def test_summary_bad_value_is_one_clear_line():
  result = _summary('--config=configs/v1.py', '--config.input.image_size=16')
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      'error: input.image_size=16 is not allowed; this architecture (total stride 32) needs an '
      'integer >= 32')


# Slow: it builds every family at every width of the papers' grids; one summary with
# overrides is the default run's (above).
@pytest.mark.slow
def test_summary_all_prints_the_paper_grid():
  result = _summary('--all', '--json')
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in result.stdout.splitlines()]
  assert [(r['config'], r['width_multiplier'], r['image_size']) for r in records][:7] == [
      ('v1', 1.0, 224), ('v1', 0.75, 224), ('v1', 0.5, 224), ('v1', 0.25, 224),
      ('v1', 1.0, 192), ('v1', 1.0, 160), ('v1', 1.0, 128)]
  assert len(records) == 7 + 6 + 2 + 2 + 5 + 2
  assert {r['config'] for r in records} == {'v1', 'v2', 'v3_large', 'v3_small', 'v4_conv_small',
                                            'v4_conv_medium', 'v4_conv_large', 'v4_hybrid_medium',
                                            'v4_hybrid_large', 'v5_base', 'v5_300m'}
  by_point = {(r['config'], r['width_multiplier']): r for r in records}
  assert round(by_point[('v2', 1.3)]['madds'] / 1e6) == 509
  assert by_point[('v4_hybrid_large', 1.0)]['image_size'] == 384
  # V5 as timm builds it: 300M is Gemma 3n's encoder (no classifier) at 768 px.
  assert (by_point[('v5_base', 1.0)]['params'], by_point[('v5_300m', 1.0)]['params']) == (
      82_647_976, 294_126_912)
  assert (by_point[('v5_300m', 1.0)]['image_size'], by_point[('v5_300m', 1.0)]['num_classes']) == (
      768, 0)


# The V4 paper's Tab. 10: RandAugment (probability, layers, magnitude) and Mixup/CutMix share.
@pytest.mark.parametrize('module, randaugment, mix_prob', [
    (v4_conv_small, (0.5, 2, 9.0), 0.0), (v4_conv_medium, (0.7, 2, 15.0), 0.0),
    (v4_hybrid_medium, (0.7, 2, 15.0), 0.0), (v4_conv_large, (1.0, 2, 15.0), 0.3),
    (v4_hybrid_large, (1.0, 2, 15.0), 0.3)], ids=lambda m: getattr(m, '__name__', ''))
def test_v4_recipes_augment_as_the_paper_and_fashion_mnist_does_not(module, randaugment,
                                                                    mix_prob):
  fields = module.get_config().input
  assert (fields.randaugment_prob, fields.randaugment_layers,
          fields.randaugment_magnitude) == randaugment
  assert (fields.mix_prob if fields.mixup_alpha else 0.0) == mix_prob
  if mix_prob:
    assert (fields.mixup_alpha, fields.cutmix_alpha, fields.mix_switch_prob) == (0.8, 1.0, 0.5)
  short = module.get_config('fashion_mnist').input
  assert short.randaugment_layers == 0 and short.mixup_alpha == short.cutmix_alpha == 0
  long = module.get_config('fashion_mnist_long')
  assert long.num_epochs == 40 and long.grad_clip_norm == 2 and long.input.randaugment_layers == 2
  strides_of = lambda config: sum(row[6] == 2 for row in config.model.blocks)
  assert strides_of(module.get_config()) - strides_of(long) == 2  # total stride 8
  assert long.input.image_size == 28
  assert long.input.random_erasing_prob > 0 and long.input.mixup_alpha == 0


@pytest.mark.parametrize('module', ALL_CONFIGS[:4], ids=lambda m: m.__name__.split('.')[-1])
@pytest.mark.parametrize('variant', [None, 'modern', 'fashion_mnist', 'fashion_mnist_long'])
def test_every_recipe_passes_the_checks_of_a_run(module, variant):
  from mobilenet_jax.train import setup  # pylint: disable=g-import-not-at-top
  config = module.get_config(variant)
  setup.build_model(config)  # every field a run reads, checked; raises ConfigError
  if variant == 'modern':
    assert config.optimizer == 'adamw' and config.schedule == 'cosine'
    assert config.input.randaugment_layers == 2 and config.num_epochs == 500
