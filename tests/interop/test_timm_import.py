"""timm's weights in our models: the same logits (eval mode) within 1e-4, every family timm has.

The timm models are built with random weights (nothing is downloaded) and their batch-norm
statistics, affine parameters and layer scales moved away from their initial values, so that
every tensor matters to the logits.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import (v1, v2, v3_large, v3_small, v4_conv_large, v4_conv_medium, v4_conv_small,
                     v4_hybrid_large, v4_hybrid_medium)
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop import pretrained, torch_reference
from mobilenet_jax.models import registry

CONFIGS = {'v1': v1, 'v2': v2, 'v3_large': v3_large, 'v3_small': v3_small,
           'v4_conv_small': v4_conv_small, 'v4_conv_medium': v4_conv_medium,
           'v4_conv_large': v4_conv_large, 'v4_hybrid_medium': v4_hybrid_medium,
           'v4_hybrid_large': v4_hybrid_large}
SIZE = 64


def _timm_model(family: str, width: float = 1.0):
  torch.manual_seed(0)
  reference = torch_reference.create_timm_model(family, width)
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, tensor in reference.state_dict().items():
      if name.endswith('running_mean') or name.endswith('.bias'):
        tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
      elif name.endswith('running_var') or name.endswith('gamma') or (
          name.endswith('weight') and tensor.ndim == 1):  # BN scales, layer scales
        tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
      elif name == 'classifier.weight':  # timm's init gives near-zero logits
        tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor.shape[1] ** 0.5)
    # Random layers compound: bring the logits to order 1, where 1e-4 is a tight tolerance.
    reference.eval()
    scale = reference(torch.randn((2, 3, SIZE, SIZE), generator=generator)).abs().max()
    reference.classifier.weight /= scale
    reference.classifier.bias /= scale
  return reference


def _imported(family: str, spec_path: str, width: float = 1.0):
  config = CONFIGS[family].get_config()
  config.model.width_multiplier = width
  config.input.image_size = SIZE
  config.init_from = f'timm:{spec_path}'
  announced = pretrained.configure(config)
  model = registry.create_model(config.model)
  return config, model, pretrained.read(config, model), announced


def _logits_agree(family, path, reference, width=1.0):
  """Both sides compute in float64 from the same float32 weights: through dozens of random
  layers, float32 rounding alone moves either side's logits by up to 1e-4 from the exact ones
  (how far depends on the CPU's vector width), while a wrong layer moves them by order 1."""
  _, model, variables, _ = _imported(family, path, width)
  images = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE))
  with torch.no_grad():
    want = reference.double()(torch.from_numpy(images)).numpy()
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    got = jax.jit(functools.partial(model.clone(dtype=jnp.float64).apply, train=False))(
        variables, images.transpose(0, 2, 3, 1))
  assert np.abs(want).max() > 0.1  # the comparison is not between near-zero logits
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


# In the default run: Conv-S (plain-conv rows, IB, ExtraDW, ConvNeXt-like), Conv-M (FusedIB,
# FFN), Hybrid-M (MQA with and without down-sampled keys, layer scale), V1, V2 and V3-Large;
# the rest are slow.
@pytest.mark.parametrize('family, width', [
    ('v4_conv_small', 1.0), ('v4_conv_medium', 1.0), ('v4_hybrid_medium', 1.0), ('v1', 1.0),
    ('v2', 1.0), ('v3_large', 1.0),
    pytest.param('v4_conv_small', 0.5, marks=pytest.mark.slow),
    pytest.param('v4_conv_large', 1.0, marks=pytest.mark.slow),
    pytest.param('v4_hybrid_large', 1.0, marks=pytest.mark.slow),  # GELU, 8 heads
    pytest.param('v3_small', 1.0, marks=pytest.mark.slow)])
def test_timm_logits_equal_ours(family, width, tmp_path):
  reference = _timm_model(family, width)
  path = str(tmp_path / 'weights.pth')
  torch.save(reference.state_dict(), path)
  _logits_agree(family, path, reference, width)


def test_safetensors_are_read_without_torch_and_set_the_evaluation_fields(tmp_path):
  import safetensors.torch  # pylint: disable=g-import-not-at-top
  reference = _timm_model('v3_small')
  path = str(tmp_path / 'model.safetensors')
  safetensors.torch.save_file(reference.state_dict(), path)
  config, _, _, announced = _imported('v3_small', path)
  assert config.model.bn_epsilon == 1e-5 and config.model.padding == 'symmetric'
  assert config.input.crop_fraction == 0.875 and config.input.interpolation == 'bicubic'
  assert any('model.bn_epsilon=1e-05' in line for line in announced)
  _logits_agree('v3_small', path, reference)


def test_v4_evaluates_at_timm_crop_fraction(tmp_path):
  path = str(tmp_path / 'weights.pth')
  torch.save(_timm_model('v4_conv_small').state_dict(), path)
  config = v4_conv_small.get_config()
  config.init_from = f'timm:{path}'
  pretrained.configure(config)
  assert config.input.crop_fraction == 0.95 and config.model.bn_epsilon == 1e-5


def test_weights_of_another_v4_are_refused_naming_the_layer(tmp_path):
  path = str(tmp_path / 'weights.pth')
  torch.save(_timm_model('v4_conv_small').state_dict(), path)
  with pytest.raises(ConfigError, match='not the same architecture|does not fit'):
    _imported('v4_hybrid_medium', path)


def test_evaluate_finds_the_config_of_timm_weights(tmp_path, capsys):
  from experiments import evaluate  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / 'weights.pth')
  torch.save(_timm_model('v4_conv_small').state_dict(), path)
  config = evaluate.config_of_timm_weights(f'timm:{path}')
  assert config.family == 'v4_conv_small' and config.input.crop_fraction == 0.95
  assert 'the weights fit configs/v4_conv_small.py' in capsys.readouterr().out
  torch.save({'conv_stem.weight': torch.zeros(7, 3, 3, 3)}, path)
  with pytest.raises(ConfigError, match='fit none of the shipped configs'):
    evaluate.config_of_timm_weights(f'timm:{path}')
