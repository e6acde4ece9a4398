"""Export of a tiny model to every format and quantization, checked against the JAX model."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax import train
from mobilenet_jax.interop import export
from mobilenet_jax.models import registry
from mobilenet_jax.tools import exporting
from mobilenet_jax.errors import ConfigError
from tests.train_fixtures import V5_TINY, mock_data, tiny_config

SIZE = 16


@pytest.fixture(scope='module')
def tiny():
  # A head wide enough (> 1024 weights a layer) for dynamic-range quantization to apply.
  config = tiny_config(**{'model.head_width': 128, 'model.num_classes': 16})
  model = registry.create_model(config.model)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
  images = np.random.default_rng(0).standard_normal((64, SIZE, SIZE, 3)).astype(np.float32)
  return model, variables, images, export.jax_predictor(model, variables)(images[:8])


@pytest.mark.parametrize('quantize, tolerance', [('none', 1e-4), ('float16', 0.02),
                                                 ('dynamic', 0.1), ('int8', 0.2)])
def test_tflite_logits_follow_the_jax_model(tiny, quantize, tolerance):
  model, variables, images, want = tiny
  flatbuffer = export.to_tflite(model, variables, SIZE, quantize, images)
  got = export.tflite_predictor(flatbuffer)(images[:8])
  scale = np.abs(want).max()
  assert np.abs(got - want).max() <= tolerance * max(scale, 1.0)
  if quantize != 'none':
    assert len(flatbuffer) < len(export.to_tflite(model, variables, SIZE))


def test_int8_model_computes_in_int8(tiny):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  model, variables, images, _ = tiny
  interpreter = Interpreter(model_content=export.to_tflite(model, variables, SIZE, 'int8', images))
  types = {d['dtype'].__name__ for d in interpreter.get_tensor_details()}
  assert 'int8' in types


def test_saved_model_round_trip(tiny, tmp_path):
  model, variables, images, want = tiny
  path = str(tmp_path / 'saved')
  export.save_saved_model(model, variables, SIZE, path)
  np.testing.assert_allclose(export.saved_model_predictor(path)(images[:8]), want, atol=1e-4)


# MobileNetV5's parts (RMSNorm, the MSFA's gathers and resizes, MQA) convert to TFLite's builtin
# ops, classifying or as the encoder (the token map out), in float32 and int8.
# Slow (half a minute): the default run exports the tiny MobileNet above in every mode.
@pytest.mark.slow
@pytest.mark.parametrize('num_classes, quantize, tolerance', [
    (10, 'none', 1e-4), (0, 'none', 1e-4), (10, 'int8', 0.2)])
def test_v5_parts_export_to_tflite(num_classes, quantize, tolerance):
  size = 20  # the MSFA's inputs are 5x5 and 3x3 (upsampled 3 -> 5), resized bilinearly to 2x2
  config = tiny_config(**{**V5_TINY, 'model.head_width': 128, 'model.num_classes': num_classes})
  model = registry.create_model(config.model)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, size, size, 3)))
  images = np.random.default_rng(0).standard_normal((64, size, size, 3)).astype(np.float32)
  want = export.jax_predictor(model, variables)(images[:8])
  got = export.tflite_predictor(export.to_tflite(model, variables, size, quantize, images))(
      images[:8])
  assert got.shape == want.shape == ((8, 10) if num_classes else (8, 2, 2, 128))
  assert np.abs(got - want).max() <= tolerance * max(np.abs(want).max(), 1.0)


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  with mock_data():
    train.train_and_evaluate(tiny_config(), workdir)
  return workdir


@pytest.mark.parametrize('fmt, quantize', [('tflite', 'int8'), ('saved_model', 'none')])
def test_export_command_verifies_its_output(trained_workdir, fmt, quantize):
  with mock_data():
    result = exporting.export_run(trained_workdir, fmt, quantize, 'ema', None, -1, 16)
  assert os.path.exists(result['output']) and result['bytes'] > 0
  assert result['step'] == 4 and result['examples'] > 0
  assert 0 <= result['exported_top1'] <= 1 and 0 <= result['jax_top1'] <= 1
  assert result['max_logit_difference'] < (1e-4 if quantize == 'none' else 1.0)


@pytest.mark.parametrize('fmt, quantize, message', [
    ('onnx', 'none', "format='onnx' is not allowed"),
    ('tflite', 'int4', "quantize='int4' is not allowed"),
    ('saved_model', 'int8', 'only none')])
def test_bad_export_arguments_fail_before_any_work(trained_workdir, fmt, quantize, message):
  with pytest.raises(ConfigError, match=message):
    exporting.export_run(trained_workdir, fmt, quantize, 'raw', None, 0, 16)


# The MobileNetV4 blocks in one tiny table: FusedIB, ExtraDW, Mobile MQA with keys and values
# down-sampled and without, GELU, layer scale, the V4 head.
TINY_V4_TABLE = (
    ('conv',  3,      None,       8,  False, 'relu', 2, 1),
    ('fused', 3,      2,          16, False, 'relu', 1, 1),
    ('uib',   (3, 5), 2,          16, False, 'relu', 1, 1),
    ('mqa',   3,      (2, 8, 2),  16, False, None,   1, 1),
    ('uib',   (3, 0), 2,          24, False, 'gelu', 2, 1),  # exported as tanh GELU in int8
    ('mqa',   3,      (2, 8, 1),  24, False, None,   1, 1),
    ('conv',  1,      None,       32, False, 'relu', 1, 1),
)


@pytest.mark.slow
@pytest.mark.parametrize('quantize, tolerance', [('none', 1e-4), ('int8', 0.2)])
def test_hybrid_v4_blocks_export_to_tflite(quantize, tolerance):
  config = tiny_config(**{'model.blocks': TINY_V4_TABLE, 'model.expansion_unit': 'ratio',
                          'model.head_width': 128, 'model.head_batch_norm': True,
                          'model.layer_scale_init': 0.5, 'model.num_classes': 16})
  model = registry.create_model(config.model)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
  images = np.random.default_rng(0).standard_normal((64, SIZE, SIZE, 3)).astype(np.float32)
  want = export.jax_predictor(model, variables)(images[:8])
  got = export.tflite_predictor(export.to_tflite(model, variables, SIZE, quantize, images))(
      images[:8])
  assert np.abs(got - want).max() <= tolerance * max(np.abs(want).max(), 1.0)
