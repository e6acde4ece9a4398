"""The public API's face: names, configs and overrides, models with their weights, and the
evaluation preprocessing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mobilenet_jax as mnj
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.models import architecture
from tests.train_fixtures import mock_data, restored_checkpoint, tiny_config


def test_init_loads_no_jax_until_the_api_is_used():
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ('import sys, mobilenet_jax, mobilenet_jax.errors; '
          'print("jax" in sys.modules, "tensorflow" in sys.modules, mobilenet_jax.__all__)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.startswith('False False')


def test_list_models_lists_every_config_and_the_variants_it_accepts():
  names = mnj.list_models()
  for name in ('v1', 'v3_large', 'v3_large:minimalistic', 'v4_conv_small:fashion_mnist',
               'v4_hybrid_medium', 'v2:modern'):
    assert name in names
  assert 'v2:minimalistic' not in names  # V2 has no minimalistic variant
  assert mnj.list_models('v4_conv_s*') == [n for n in names if n.startswith('v4_conv_small')]
  for name in names:  # each is a name the factory takes, and the config's own
    assert mnj.get_config(name).name == name


def test_overrides_are_model_fields_or_dotted_paths():
  config = mnj.get_config('v2', num_classes=10, width_multiplier=0.5,
                          **{'input.image_size': 160}, seed=3)
  assert config.model.width_multiplier == 0.5 and config.model.num_classes == 10
  assert config.input.image_size == 160 and config.seed == 3


@pytest.mark.parametrize('kwargs, message', [
    ({'widht_multiplier': 0.5}, "override widht_multiplier=0.5 is not allowed: model has no "
                                "field 'widht_multiplier'; did you mean 'width_multiplier'?"),
    ({'image_size': 160}, "model has no field 'image_size'"),
    ({'input.imagesize': 160}, "input has no field 'imagesize'; did you mean 'image_size'?"),
    ({'nope.x': 1}, "the config has no field 'nope'"),
    ({'width_multiplier': 'big'}, 'override width_multiplier='),
])
def test_a_bad_override_is_one_line_naming_it(kwargs, message):
  with pytest.raises(ConfigError) as error:
    mnj.create_model('v2', **kwargs)
  assert message in str(error.value) and '\n' not in str(error.value)


def test_bad_names_and_weights_are_one_line(tmp_path):
  with pytest.raises(ConfigError, match="model 'v9' is not known; choose a family of v1, v2"):
    mnj.create_model('v9')
  with pytest.raises(ConfigError, match="config variant 'minimalistic' is not allowed for v2"):
    mnj.create_model('v2:minimalistic')
  with pytest.raises(ConfigError, match="weights='imagenet' is not allowed; give None, a run "
                                        'directory or torchvision:PATH, keras:PATH, timm:PATH'):
    mnj.create_model('v2', weights='imagenet')
  with pytest.raises(ConfigError, match='no file'):
    mnj.create_model('v2', weights=f'timm:{tmp_path / "missing.pth"}')
  (tmp_path / 'w.pth').write_bytes(b'')
  with pytest.raises(ConfigError, match='is not allowed for v4_conv_small: torchvision has'):
    mnj.create_model('v4_conv_small', weights=f'torchvision:{tmp_path / "w.pth"}')


def test_a_fresh_model_applies_and_its_backbone_matches_the_table():
  kwargs = {'width_multiplier': 0.25, 'input.image_size': 40}
  module, variables = mnj.create_model('v3_small', num_classes=7, **kwargs)
  assert set(variables) == {'params', 'batch_stats'}
  images = jnp.zeros((2, 40, 40, 3))
  assert jax.eval_shape(module.apply, variables, images).shape == (2, 7)
  again = mnj.create_model('v3_small', num_classes=7, **kwargs)[1]  # the config's seed
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, variables, again)))
  backbone, body = mnj.create_model('v3_small', features_only=True, **kwargs)
  assert 'classifier' not in body['params'] and 'head_conv' not in body['params']
  info = mnj.feature_info('v3_small', **kwargs)
  maps = jax.eval_shape(backbone.apply, body, images)
  # 40 px: the maps are ceil(40 / stride) wide.
  assert [m.shape for m in maps] == [(2, -(-40 // f['stride']), -(-40 // f['stride']),
                                      f['channels']) for f in info]
  assert [f['stride'] for f in info] == [2, 4, 8, 16, 32]


def test_eval_transform_is_the_configs_preprocessing(tmp_path):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
  small = mnj.eval_transform('v4_conv_small:fashion_mnist')  # 28 px, a plain resize: none here
  config = mnj.get_config('v4_conv_small:fashion_mnist')
  want = (image - np.array(config.input.mean)) / np.array(config.input.std)
  np.testing.assert_allclose(small(image)[0], want, atol=1e-5)
  assert small(np.stack([image] * 3)).shape == (3, 28, 28, 3)
  (tmp_path / 'w.h5').write_bytes(b'')  # Keras's inputs are in [-1, 1], whatever the file
  keras = mnj.eval_transform('v2', f'keras:{tmp_path / "w.h5"}')
  out = keras(np.full((2, 300, 200, 3), 255, np.uint8))
  assert out.shape == (2, 224, 224, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, 1.0, atol=1e-5)
  # timm's V4 weights were measured with a central crop of 0.95 of the image, not 0.875.
  (tmp_path / 'w.pth').write_bytes(b'')
  gradient = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (256, 256, 3))
  timm = mnj.eval_transform('v4_conv_small', f'timm:{tmp_path / "w.pth"}')(gradient)
  ours = mnj.eval_transform('v4_conv_small')(gradient)
  assert timm[0, 0, 0, 0] < ours[0, 0, 0, 0]  # a wider crop reaches darker pixels
  with pytest.raises(ConfigError, match='give uint8 RGB, HxWx3 or NxHxWx3'):
    small(image.astype(np.float32))


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  from mobilenet_jax import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('run'))
  with mock_data():
    train.train_and_evaluate(tiny_config(), workdir)
  return workdir


def test_a_run_directory_gives_its_latest_raw_weights(trained_workdir):
  with mock_data():
    module, variables = mnj.create_model('v3_small', weights=trained_workdir)
    backbone, body = mnj.create_model('v3_small', weights=trained_workdir, features_only=True)
    _, refit = mnj.create_model('v3_small', weights=trained_workdir, num_classes=3)
  saved = restored_checkpoint(trained_workdir)
  jax.tree.map(np.testing.assert_array_equal, variables['params'], saved['params'])
  assert module.num_classes == 10 and len(module.architecture.layers) == 3
  assert set(body['params']) == {f'{l.block}_{i}' for i, l in enumerate(
      architecture.resolve(tiny_config().model).body)}
  assert backbone.features_only
  assert refit['params']['classifier']['kernel'].shape[-1] == 3
  with pytest.raises(ConfigError, match='is a run of v3_small, not of v2'):
    mnj.create_model('v2', weights=trained_workdir)


def test_class_names_come_from_the_dataset_or_imagenet():
  from mobilenet_jax.tools import predicting  # pylint: disable=g-import-not-at-top
  fashion = mnj.get_config('v4_conv_small:fashion_mnist')
  assert predicting.class_names(fashion, 10)[:2] == ['T-shirt/top', 'Trouser']  # TFDS's names
  assert predicting.class_names(fashion, 7) == [str(i) for i in range(7)]  # not that dataset's
  # Published weights: ImageNet's synset ids, as TFDS ships them (with timm's words if there).
  assert predicting.class_names(mnj.get_config('v2'), 1000)[0].startswith('n01440764')


def test_predict_classifies_with_a_runs_weights(trained_workdir, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mobilenet_jax.tools import predicting  # pylint: disable=g-import-not-at-top
  for i in range(3):
    tf.io.write_file(str(tmp_path / f'{i}.png'), tf.io.encode_png(
        np.random.default_rng(i).integers(0, 256, (20, 24, 3), dtype=np.uint8)))
  with mock_data():
    predictor = predicting.Predictor.load(None, trained_workdir, None, batch_size=2)
  assert len(predictor.names) == 10  # (cifar10 keeps its names in the prepared metadata only)
  results = list(predictor.classify(predicting.image_paths([str(tmp_path)]), top=3))
  assert [r['path'] for r in results] == [str(tmp_path / f'{i}.png') for i in range(3)]
  for result in results:
    probabilities = [e['probability'] for e in result['top']]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert all(e['name'] == predictor.names[e['class']] for e in result['top'])
