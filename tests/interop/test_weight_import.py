"""torchvision weights in our models: the same logits (eval mode) within 1e-4, every family."""

import functools

import jax
import numpy as np
import pytest
import torch

from configs import v1, v2, v3_large, v3_small
from mobilenet_jax import train
from mobilenet_jax.interop import pretrained, torch_reference, weight_import
from mobilenet_jax.interop.sources import SOURCES
from mobilenet_jax.models import complexity, registry
from mobilenet_jax.train import loop, parallel, setup
from mobilenet_jax.errors import ConfigError
from tests.train_fixtures import mock_data

FAMILIES = {'v2': v2, 'v3_large': v3_large, 'v3_small': v3_small}
SIZE = 64


def _models(family: str, width: float):
  config = FAMILIES[family].get_config()
  config.model.width_multiplier = width
  config.model.update(SOURCES['torchvision'].model_fields[family])
  config.input.image_size = SIZE
  model = registry.create_model(config.model)
  params = complexity.totals(complexity.layer_costs(model, SIZE))[0]
  torch.manual_seed(0)
  reference = torch_reference.create_model(config, params)
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():  # batch-norm statistics and affine parameters away from identity
    for module in reference.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        size = module.num_features
        module.running_mean.copy_(0.2 * torch.randn(size, generator=generator))
        module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
        module.weight.copy_(0.5 + torch.rand(size, generator=generator))
        module.bias.copy_(0.2 * torch.randn(size, generator=generator))
      elif isinstance(module, torch.nn.Linear):  # torchvision's N(0, 0.01) gives ~0 logits
        fan_in = module.weight.shape[1]
        module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
        module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
  return model, reference.eval()


def _logits(model, variables, images):
  # Compiled: run op by op, the shifted depthwise convs alone take ~20 s at width 1.0.
  return jax.jit(functools.partial(model.apply, train=False))(variables, images)


# torchvision's V3 at widths other than 1.0 also narrows the 1280/1024-wide head, unlike the
# paper and Keras (which we follow); torchvision publishes weights for 1.0 only.
@pytest.mark.parametrize('family, width', [('v2', 1.0), ('v2', 0.5), ('v3_large', 1.0),
                                           ('v3_small', 1.0)])
def test_torchvision_logits_equal_ours(family, width):
  model, reference = _models(family, width)
  images = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
  with torch.no_grad():
    want = reference(torch.from_numpy(images)).numpy()
  variables = weight_import.assign(weight_import.torch_layers(reference.state_dict()), model,
                                   SIZE)
  got = _logits(model, variables, images.transpose(0, 2, 3, 1))
  assert np.abs(want).max() > 0.1  # the comparison is not between near-zero logits
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_weights_of_another_architecture_are_refused():
  model, _ = _models('v3_small', 1.0)
  _, other = _models('v3_large', 1.0)
  with pytest.raises(ConfigError, match='not the same architecture|does not fit'):
    weight_import.assign(weight_import.torch_layers(other.state_dict()), model, SIZE)


def test_init_from_loads_the_weights_resizes_the_classifier_and_fine_tunes_it(tmp_path, capsys):
  _, reference = _models('v3_small', 1.0)
  path = str(tmp_path / 'v3s.pth')
  torch.save(reference.state_dict(), path)
  config = v3_small.get_config('small_image')  # strides differ, parameters do not
  config.model.num_classes = 10
  config.input.image_size = 32
  config.init_from = f'torchvision:{path}'
  config.batch_size = 8
  config.body_learning_rate_scale = 0.0  # fine-tuning with a frozen body: a linear probe
  pretrained.configure(config)
  model = setup.build_model(config)
  assert config.model.bn_epsilon == 1e-3 and config.model.padding == 'symmetric'
  compiled = parallel.compile_steps(model, config, steps_per_epoch=10, num_steps=10)
  run = setup.Setup(model, None, None, 10, False, weights=pretrained.read(config, model))
  state = loop.initial_state(compiled, run)
  assert 'classifier is re-initialized (1000 classes in the weights, 10 here)' in (
      capsys.readouterr().out)
  stem = reference.state_dict()['features.0.0.weight'].numpy().transpose(2, 3, 1, 0)
  np.testing.assert_array_equal(state.params['conv_0']['conv_bn']['conv']['kernel'], stem)
  np.testing.assert_array_equal(state.ema_params['conv_0']['conv_bn']['conv']['kernel'], stem)
  for stats in (state.batch_stats, state.ema_batch_stats):
    np.testing.assert_array_equal(stats['conv_0']['conv_bn']['bn']['var'],
                                  reference.state_dict()['features.0.1.running_var'].numpy())
  assert state.params['classifier']['kernel'].shape == (1024, 10)
  classifier = np.array(state.params['classifier']['kernel'])  # a copy: the state is donated
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(8, 32, 32, 3)).astype(np.float32),
           'label': np.arange(8) % 10}
  state, _ = compiled.train_step(state, compiled.to_devices(batch))
  np.testing.assert_array_equal(state.params['conv_0']['conv_bn']['conv']['kernel'], stem)
  assert not np.array_equal(state.params['classifier']['kernel'], classifier)


@pytest.mark.parametrize('spec, message', [('onnx:/nope', 'use one of torchvision:PATH, keras:PATH'),
                                           ('torchvision:/nope.pth', 'no file /nope.pth')])
def test_bad_init_from_is_one_clear_error(spec, message):
  config = v3_small.get_config()
  config.init_from = spec
  with pytest.raises(ConfigError, match=message):
    pretrained.configure(config)


# V3-Small and its minimalistic form in the default run (the suite's time; V1's depthwise-
# separable rows are proven by timm's V1 there); the other families and widths are slow.
KERAS_CASES = [('v3_small', 1.0, ''), ('v3_small', 1.0, 'minimalistic'),
               pytest.param('v1', 1.0, '', marks=pytest.mark.slow),
               pytest.param('v2', 1.0, '', marks=pytest.mark.slow),
               pytest.param('v3_large', 1.0, '', marks=pytest.mark.slow),
               pytest.param('v1', 0.5, '', marks=pytest.mark.slow),
               pytest.param('v2', 0.35, '', marks=pytest.mark.slow),
               pytest.param('v3_large', 0.75, '', marks=pytest.mark.slow),
               pytest.param('v3_large', 1.0, 'minimalistic', marks=pytest.mark.slow),
               # The 16-channel stem kept at any width (model.scale_stem=False).
               pytest.param('v3_large', 0.5, '', marks=pytest.mark.slow),
               pytest.param('v3_small', 1.25, '', marks=pytest.mark.slow)]
KERAS_FAMILIES = {'v1': v1, **FAMILIES}


@pytest.mark.parametrize('family, width, variant', KERAS_CASES)
def test_keras_logits_equal_ours(family, width, variant):
  reference = weight_import.keras_model(family, width, variant == 'minimalistic',
                                         image_size=SIZE)
  rng = np.random.default_rng(0)
  for layer in reference.layers:  # batch-norm statistics and affine parameters off identity
    if type(layer).__name__ == 'BatchNormalization':
      size = layer.get_weights()[0].shape[0]
      layer.set_weights([0.5 + rng.random(size), 0.2 * rng.standard_normal(size),
                         0.2 * rng.standard_normal(size), 0.5 + rng.random(size)])
  config = KERAS_FAMILIES[family].get_config(variant or None)
  config.model.width_multiplier = width
  config.model.update(SOURCES['keras'].model_fields[family])
  model = registry.create_model(config.model)
  images = rng.standard_normal((2, SIZE, SIZE, 3)).astype(np.float32)
  want = np.asarray(reference(images, training=False))
  variables = weight_import.assign(weight_import.keras_layers(reference), model, SIZE)
  got = _logits(model, variables, images)
  assert np.abs(want).max() > 0.1
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


# Slow: a full V3-Small's evaluation. `experiments.evaluate` of imported weights runs in the
# default suite on timm's (test_timm_import.py), torchvision's conversion in the tests above.
@pytest.mark.slow
def test_evaluate_imported_weights(tmp_path):
  """`experiments.evaluate --init_from=...`: the imported model scores on the eval split."""
  _, reference = _models('v3_small', 1.0)
  path = str(tmp_path / 'v3s.pth')
  torch.save(reference.state_dict(), path)
  config = v3_small.get_config()
  config.dataset, config.eval_split, config.download = 'cifar10', 'test', True
  config.model.num_classes = 10
  config.input.image_size, config.input.preprocessing = 32, 'small'
  config.batch_size = 8
  config.init_from = f'torchvision:{path}'
  with mock_data(16):
    metrics = train.evaluate_imported(config)
  assert 0 <= metrics['raw/top1'] <= 1 and metrics['raw/top1'] == metrics['ema/top1']
  assert np.isfinite(metrics['raw/loss'])
