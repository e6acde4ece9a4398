"""timm's MobileNetV5 in ours: the MSFA's resizes, the token map and the logits (eval mode)
within 1e-4 given the same weights, read from timm's state_dict and .safetensors files.

As in test_timm_import.py, timm's models have random weights with their norms' scales, biases
and layer scales moved away from their initial values, and both sides compute in float64.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import v5_300m, v5_base
from mobilenet_jax.interop import pretrained, torch_reference
from mobilenet_jax.models import fusion, registry
from mobilenet_jax.models.layers import ConvBN

CONFIGS = {'v5_base': v5_base, 'v5_300m': v5_300m}


def _randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
  with torch.no_grad():
    for name, tensor in module.state_dict().items():
      if name.endswith('.bias'):
        tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator))
      elif name.endswith('gamma') or (name.endswith('weight') and tensor.ndim == 1):
        tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))  # RMSNorm, layer scale
      elif name == 'classifier.weight':  # timm's init gives near-zero logits
        tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor.shape[1] ** 0.5)


def _timm_model(family: str, size: int, width: float = 1.0, num_classes: int = 1000):
  torch.manual_seed(0)
  reference = torch_reference.create_timm_model(family, width, num_classes).eval()
  generator = torch.Generator().manual_seed(1)
  _randomize(reference, generator)
  if num_classes:  # bring the logits to order 1, where 1e-4 is a tight tolerance
    with torch.no_grad():
      scale = reference(torch.randn((2, 3, size, size), generator=generator)).abs().max()
      reference.classifier.weight /= scale
      reference.classifier.bias /= scale
  return reference


def _imported(family: str, path: str, size: int, width: float = 1.0, num_classes: int = 1000):
  config = CONFIGS[family].get_config()
  config.model.width_multiplier = width
  config.model.num_classes = num_classes
  config.input.image_size = size
  config.init_from = f'timm:{path}'
  announced = pretrained.configure(config)
  model = registry.create_model(config.model)
  return config, model, pretrained.read(config, model), announced


def _ours(model, variables, images):
  """Our logits (or token map) and the MSFA's token map, NCHW, in float64."""
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    apply = functools.partial(model.clone(dtype=jnp.float64).apply, train=False,
                              capture_intermediates=lambda module, _: module.name == 'msfa')
    out, state = jax.jit(apply)(variables, images.transpose(0, 2, 3, 1))
    tokens = state['intermediates']['msfa']['__call__'][0]
    return np.asarray(out), np.asarray(tokens).transpose(0, 3, 1, 2)


def _agree(family, path, reference, size, width=1.0, num_classes=1000):
  """The MSFA's token maps agree, and the logits where the model classifies."""
  _, model, variables, _ = _imported(family, path, size, width, num_classes)
  images = np.random.default_rng(0).standard_normal((2, 3, size, size))
  with torch.no_grad():
    reference = reference.double()
    want_tokens = reference.forward_features(torch.from_numpy(images))
    want = reference.forward_head(want_tokens).numpy() if num_classes else None
  got, got_tokens = _ours(model, variables, images)
  want_tokens = want_tokens.numpy()
  assert got_tokens.shape == want_tokens.shape == (2, 2048, 16, 16)
  assert np.abs(want_tokens).max() > 0.1
  np.testing.assert_allclose(got_tokens, want_tokens, atol=1e-4, rtol=0)
  if num_classes:
    assert np.abs(want).max() > 0.1  # the comparison is not between near-zero logits
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  else:
    # The encoder's output is the token map (as float32, as the network's outputs are).
    np.testing.assert_array_equal(got, got_tokens.transpose(0, 2, 3, 1).astype(np.float32))


# In the default run both at a quarter of the width (every kind of layer, 16x fewer weights):
# base's logits and tokens from a .safetensors file (whose sorted names exercise the rebuilt
# call order), 300M's tokens (keys and values down-sampled) from Gemma-3n-like weights without
# a classifier. 64 px: the 1/16 map is 4x4, so the MSFA resizes it bilinearly to 16x16 (its
# pooling path is checked on the MSFA alone below). At full width they are slow.
def test_v5_base_logits_and_tokens_equal_timm(tmp_path):
  import safetensors.torch  # pylint: disable=g-import-not-at-top
  reference = _timm_model('v5_base', 64, width=0.25)
  path = str(tmp_path / 'model.safetensors')
  safetensors.torch.save_file(reference.state_dict(), path)
  _agree('v5_base', path, reference, 64, width=0.25)


# Slow: a second V5 network; the loading of timm's V5 weights is the test above.
@pytest.mark.slow
def test_gemma_encoder_weights_give_timm_tokens_and_fit_a_classifier(tmp_path):
  """Gemma 3n's weights have no classifier: they load into the encoder (num_classes 0) and,
  with a fresh classifier, into a classifying config; inputs as timm's config ([0, 1])."""
  reference = _timm_model('v5_300m', 64, width=0.25, num_classes=0)
  path = str(tmp_path / 'weights.pth')
  torch.save(reference.state_dict(), path)
  _agree('v5_300m', path, reference, 64, width=0.25, num_classes=0)
  config, model, variables, _ = _imported('v5_300m', path, 64, width=0.25, num_classes=10)
  assert config.model.bn_epsilon == 1e-6 and config.input.std == (255.0,) * 3
  assert config.input.crop_fraction == 1.0 and config.input.mean == (0.0,) * 3
  assert 'classifier' not in variables['params'] and not variables['batch_stats']
  fresh = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  merged = pretrained.with_classifier(variables, fresh)
  assert merged['params']['classifier']['kernel'].shape == (2048, 10)


@pytest.mark.slow
@pytest.mark.parametrize('family, num_classes', [('v5_base', 1000), ('v5_300m', 0)])
def test_v5_at_full_width_equals_timm(family, num_classes, tmp_path):
  reference = _timm_model(family, 64, num_classes=num_classes)
  path = str(tmp_path / 'weights.pth')
  torch.save(reference.state_dict(), path)
  _agree(family, path, reference, 64, num_classes=num_classes)


# The MSFA alone against timm's, at token-map resolutions that take each of its paths: equal
# (no resize), pooled with whole windows, and bilinear up and down; the lower-resolution input
# is upsampled by nearest neighbour at 2x and at a ratio that is not whole (5 -> 7 and 9 -> 12).
@pytest.mark.parametrize('high, low', [(16, 8), (32, 16), (7, 5), (12, 9), (20, 10)])
def test_msfa_equals_timm(high, low):
  torch_reference.import_torchvision_models()  # before timm
  from timm.models.mobilenetv5 import MobileNetV5MultiScaleFusionAdapter  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  reference = MobileNetV5MultiScaleFusionAdapter([8, 16], 24, 16, expansion_ratio=2.0).eval()
  _randomize(reference, torch.Generator().manual_seed(1))
  rng = np.random.default_rng(0)
  inputs = [rng.standard_normal((2, 8, high, high)), rng.standard_normal((2, 16, low, low))]
  with torch.no_grad():
    want = reference.double()([torch.from_numpy(x) for x in inputs]).numpy()
  norm = functools.partial(nn.RMSNorm, epsilon=1e-6, dtype=jnp.float64)
  conv_bn = functools.partial(ConvBN, norm=norm, dtype=jnp.float64)
  module = fusion.MultiScaleFusion(24, 16, 2.0, 'gelu_tanh', conv_bn, norm)
  state = {k: v.double().numpy() for k, v in reference.state_dict().items()}
  params = {
      'expand': {'conv': {'kernel': state['ffn.pw_exp.conv.weight'].transpose(2, 3, 1, 0)},
                 'bn': {'scale': state['ffn.pw_exp.bn.weight']}},
      'project': {'conv': {'kernel': state['ffn.pw_proj.conv.weight'].transpose(2, 3, 1, 0)},
                  'bn': {'scale': state['ffn.pw_proj.bn.weight']}},
      'norm': {'scale': state['norm.weight']}}
  with jax.enable_x64(True):
    got = module.apply({'params': params}, [x.transpose(0, 2, 3, 1) for x in inputs])
  np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), want, atol=1e-10, rtol=0)


# PyTorch's own counter on timm's model, built on the meta device (no memory, no arithmetic):
# its parameters and its multiply-adds (flops / 2) equal ours exactly.
@pytest.mark.parametrize('family, size', [
    ('v5_base', 256), pytest.param('v5_300m', 768, marks=pytest.mark.slow)])
def test_params_and_madds_equal_timm_and_flop_counter(family, size):
  from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=g-import-not-at-top
  from mobilenet_jax.models import complexity  # pylint: disable=g-import-not-at-top
  config = CONFIGS[family].get_config()
  with torch.device('meta'):
    reference = torch_reference.create_timm_model(family, 1.0, config.model.num_classes).eval()
    with FlopCounterMode(display=False) as counter:
      reference(torch.empty(1, 3, size, size))
  theirs = (sum(p.numel() for p in reference.parameters()), counter.get_total_flops() // 2)
  model = registry.create_model(config.model)
  assert complexity.model_totals(model, size) == theirs
