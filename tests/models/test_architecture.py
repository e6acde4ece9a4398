"""Table resolution: repeats, width rules, expansion, SE widths, channel rounding, bad tables."""

import numpy as np
import pytest

from configs import v1, v2, v3_large, v3_small, v4_conv_small
from mobilenet_jax.models import architecture, complexity
from mobilenet_jax.models.architecture import make_divisible
from mobilenet_jax.models.registry import create_model
from mobilenet_jax.errors import ConfigError


def _resolve(module, width=1.0, arg=None):
  config = module.get_config(arg)
  config.model.width_multiplier = width
  return architecture.resolve(config.model)


def test_repeats_expand_with_stride_on_the_first_only():
  arch = _resolve(v2)
  assert len(arch.layers) == 1 + 17 + 1  # stem, 17 bottlenecks, last conv
  strides = [layer.stride for layer in arch.layers]
  assert strides == [2, 1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
  assert arch.total_stride == 32 and arch.min_image_size == 32


def test_v3_large_resolves_to_the_paper_table():
  arch = _resolve(v3_large)
  expanded = [l.expanded for l in arch.layers if l.block == 'ir']
  assert expanded == [16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]
  se_widths = [l.se_width for l in arch.layers if l.block == 'ir']
  # SE squeeze width = make_divisible(expanded / 4) where the table has SE.
  assert se_widths == [0, 0, 0, 24, 32, 32, 0, 0, 0, 0, 120, 168, 168, 240, 240]
  assert arch.layers[-1].out == 960 and arch.head_width == 1280


@pytest.mark.parametrize('module, head', [(v3_large, 1280), (v3_small, 1024)])
def test_head_width_scales_only_above_one(module, head):
  assert _resolve(module, 0.5).head_width == head
  assert _resolve(module, 0.75).head_width == head
  assert _resolve(module, 1.25).head_width == {1280: 1600, 1024: 1280}[head]
  # The pre-pooling conv scales with the rest of the network.
  assert _resolve(module, 0.5).layers[-1].out < _resolve(module).layers[-1].out


def test_v2_last_conv_scales_only_above_one_and_v1_always():
  assert _resolve(v2, 0.5).layers[-1].out == 1280
  assert _resolve(v2, 1.4).layers[-1].out == 1792
  assert _resolve(v1, 0.5).layers[-1].out == 512


def test_width_multiplier_scales_and_rounds_every_width():
  for module in (v1, v2, v3_large, v3_small):
    full, half = _resolve(module), _resolve(module, 0.5)
    for a, b in zip(full.layers, half.layers):
      assert b.out % 8 == 0 and b.out <= a.out
      assert b.expanded % 8 == 0 or module is v2


def test_expansion_keeps_its_ratio_at_other_widths():
  # V3 at alpha 0.75: 88/24 of a 24-wide input (24*0.75 -> 24) stays 88; 200/80 of 64 -> 160.
  layers = _resolve(v3_large, 0.75).layers
  assert [l.expanded for l in layers if l.block == 'ir'][7] == 160
  assert [l.expanded for l in _resolve(v3_small, 0.75).layers if l.block == 'ir'][2] == 88
  # V2's t multiplies the scaled input width.
  assert all(l.expanded == l.in_width * (1 if i == 1 else 6)
             for i, l in enumerate(_resolve(v2, 0.35).layers) if l.block == 'ir')


def test_small_image_variant_reduces_the_first_two_strides():
  for module in (v1, v2, v3_large, v3_small):
    config = module.get_config('small_image')
    arch = architecture.resolve(config.model)
    assert arch.total_stride == 8 and config.input.image_size == 32
    assert architecture.check_image_size(arch, 28) == 28


def test_minimalistic_variant():
  config = v3_small.get_config('minimalistic')
  for block, kernel, _, _, se, activation, _, _ in config.model.blocks:
    assert (se, activation) == (False, 'relu')
    assert kernel == 3 or block == 'conv'
  # The conv rows keep their kernels: the 3x3 stem and the 1x1 conv before pooling.
  assert [row[1] for row in config.model.blocks if row[0] == 'conv'] == [3, 1]
  large = v3_large.get_config('minimalistic')
  params, madds = complexity.totals(complexity.layer_costs(create_model(large.model), 224))
  assert round(params / 1e5) == 39 and round(madds / 1e6) == 209  # paper: 3.9M, 209M
  assert config.model.head_activation == 'relu' and config.name == 'v3_small:minimalistic'
  assert v3_large.get_config('minimalistic,small_image').name == 'v3_large:minimalistic,small_image'


def _bad(field, value):
  config = v3_small.get_config()
  if field.startswith('row'):
    rows = [list(r) for r in config.model.blocks]
    rows[2][architecture.ROW_FIELDS.index(field[4:])] = value
    config.model.blocks = tuple(tuple(r) for r in rows)
  else:
    config.model[field] = value
  return config


@pytest.mark.parametrize('field, value, message', [
    ('width_multiplier', 0.0, 'model.width_multiplier=0.0'),
    ('width_multiplier', -0.5, 'model.width_multiplier=-0.5'),
    ('row.activation', 'swish', "model.blocks[2].activation='swish' is not allowed; choose one of:"
                                " 'relu', 'relu6', 'hard_swish', 'hard_sigmoid', 'gelu', 'gelu_tanh'"),
    ('row.block', 'resnet', "model.blocks[2].block='resnet' is not allowed; choose one of: "
                            "'conv', 'ds', 'ir', 'uib', 'fused', 'mqa'"),
    ('row.kernel', 4, 'model.blocks[2].kernel=4'),
    ('row.stride', 3, 'model.blocks[2].stride=3'),
    ('row.repeats', 0, 'model.blocks[2].repeats=0'),
    ('row.expansion', -1, 'model.blocks[2].expansion=-1'),
    ('row.se', 'yes', "model.blocks[2].se='yes'"),
    ('expansion_unit', 'percent', "model.expansion_unit='percent'"),
    ('head_activation', 'swish', "model.head_activation='swish'"),
    ('head_width', -5, 'model.head_width=-5'),
    ('blocks', (), 'model.blocks=() is malformed'),
])
def test_bad_values_name_the_field(field, value, message):
  with pytest.raises(ConfigError) as error:
    architecture.resolve(_bad(field, value).model)
  assert message in str(error.value) and '\n' not in str(error.value)


def test_malformed_row():
  config = v3_small.get_config()
  config.model.blocks = config.model.blocks[:3] + (('ir', 3, 72, 24),)
  with pytest.raises(ConfigError, match=r'model.blocks\[3\]=.* is malformed; a row has 8 fields'):
    architecture.resolve(config.model)


def test_expansion_on_a_non_ir_row_is_rejected():
  config = v1.get_config()
  config.model.blocks = (('ds', 3, 6, 64, False, 'relu6', 1, 1),)
  with pytest.raises(ConfigError, match=r"only 'ir', 'uib', 'fused', 'mqa' rows take one"):
    architecture.resolve(config.model)


@pytest.mark.parametrize('row, message', [
    (('uib', 3, 4, 64, False, 'relu', 1, 1), r"kernel=3 is not allowed; a 'uib' row takes a pair"),
    (('uib', (0, 4), 4, 64, False, 'relu', 1, 1), r'kernel=\(0, 4\) is not allowed'),
    (('uib', (0, 0), 4, 64, False, 'relu', 2, 1), r'stride=2 is not allowed with kernel \(0, 0\)'),
    (('mqa', 3, (4, 64), 64, False, None, 1, 1), r"an 'mqa' row takes \(heads, key dim, kv stride"),
    (('mqa', 3, (4, 64, 3), 64, False, None, 1, 1), r'expansion=\(4, 64, 3\) is not allowed'),
    (('mqa', 3, (4, 64, 1), 64, False, 'relu', 1, 1), r"activation='relu' is not allowed"),
    (('mqa', 3, (4, 64, 1), 64, False, None, 2, 1), r'stride=2 is not allowed'),
    (('fused', 3, 4, 64, True, 'relu', 1, 1), r'se=True is not allowed'),
])
def test_v4_rows_are_checked(row, message):
  config = v1.get_config()
  config.model.blocks = (('conv', 3, None, 32, False, 'relu', 2, 1), row)
  with pytest.raises(ConfigError, match=message):
    architecture.resolve(config.model)


def test_uib_kernels_and_mqa_heads_resolve_per_row():
  config = v1.get_config()
  config.model.expansion_unit = 'ratio'
  config.model.scale_stem = False
  config.model.width_multiplier = 0.5
  config.model.blocks = (('conv', 3, None, 32, False, 'relu', 2, 1),
                         ('uib', (3, 5), 4, 64, False, 'relu', 2, 2),
                         ('fused', 3, 2, 64, False, 'relu', 1, 1),
                         ('mqa', 3, (4, 16, 2), 64, False, None, 1, 1))
  stem, first, second, fused, mqa = architecture.resolve(config.model).layers
  assert stem.out == 32  # kept at its width below width 1
  assert (first.start_kernel, first.kernel, first.in_width, first.expanded, first.out,
          first.stride) == (3, 5, 32, 128, 32, 2)
  assert (second.in_width, second.expanded, second.stride) == (32, 128, 1)
  assert (fused.kernel, fused.expanded) == (3, 64)
  assert (mqa.heads, mqa.key_dim, mqa.kv_stride, mqa.activation) == (4, 16, 2, None)


def test_resolution_below_the_minimum():
  arch = _resolve(v3_large)
  assert architecture.check_image_size(arch, 32) == 32
  for size in (31, 16, 0, 32.0):
    with pytest.raises(ConfigError, match=r'input.image_size=.* needs an integer >= 32'):
      architecture.check_image_size(arch, size)


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


def test_msfa_head_needs_its_width_and_two_resolutions():
  config = v4_conv_small.get_config()
  config.model.head = 'msfa'
  config.model.head_width = 0
  with pytest.raises(ConfigError, match=r"model.head_width=0 is not allowed with "
                                        r"model.head='msfa'"):
    architecture.resolve(config.model)
  config.model.head_width = 64
  config.model.blocks = (('conv', 3, None, 16, False, 'relu', 2, 1),
                         ('ir', 3, 4, 16, False, 'relu', 1, 2))
  with pytest.raises(ConfigError, match="a row after the first must have stride 2"):
    architecture.resolve(config.model)
  config.model.blocks += (('ir', 3, 4, 24, False, 'relu', 2, 1),)
  assert architecture.resolve(config.model).fusion_taps == (2, 3)
