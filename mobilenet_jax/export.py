"""Trained models out to TensorFlow: a SavedModel, or TFLite (float32, float16, dynamic-range
or int8 weights and activations), through jax2tf, each checked against the JAX model.

The exported function takes a batch of one normalized NHWC float32 image (as the input pipeline
makes them) and returns logits. The model is rebuilt for export with the plain `grouped`
depthwise and `conv` implementations, which the converter maps onto TFLite's own
DEPTHWISE_CONV_2D and CONV_2D kernels (the CPU-speed formulations would become dozens of
elementwise ops); the parameters are the same.
"""

import json
import os
from collections.abc import Callable, Iterable

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from mobilenet_jax import checkpointing, input_pipeline, train
from mobilenet_jax.config_errors import ConfigError, check_choice

FORMATS = ('tflite', 'saved_model')
QUANTIZATIONS = ('none', 'float16', 'dynamic', 'int8')


def for_export(model: nn.Module) -> nn.Module:
  return model.clone(depthwise_implementation='grouped', conv_implementation='conv')


def tf_function(model: nn.Module, variables: dict, image_size: int) -> tf.types.experimental.ConcreteFunction:
  """The eval-mode model as a TF concrete function of a (1, size, size, 3) float32 batch."""
  predict = jax2tf.convert(lambda images: for_export(model).apply(variables, images, train=False),
                           with_gradient=False)
  function = tf.function(predict, autograph=False, input_signature=[
      tf.TensorSpec((1, image_size, image_size, 3), tf.float32, name='images')])
  return function.get_concrete_function()


def to_tflite(model: nn.Module, variables: dict, image_size: int, quantize: str = 'none',
              representative_images: Iterable[np.ndarray] | None = None) -> bytes:
  """TFLite flatbuffer; int8 needs representative images (a few hundred from training data)."""
  module = tf.Module()
  module.predict = tf_function(model, variables, image_size)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([module.predict], module)
  if quantize != 'none':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == 'int8':
    if representative_images is None:
      raise ValueError('int8 quantization needs representative images')
    images = list(representative_images)
    converter.representative_dataset = lambda: ([image[None]] for image in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  return converter.convert()


def save_saved_model(model: nn.Module, variables: dict, image_size: int, path: str) -> None:
  module = tf.Module()
  module.predict = tf_function(model, variables, image_size)
  tf.saved_model.save(module, path, signatures={'serving_default': module.predict})


def tflite_predictor(flatbuffer: bytes) -> Callable[[np.ndarray], np.ndarray]:
  """Logits of a batch of images, one interpreter call per image."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=flatbuffer)
  interpreter.allocate_tensors()
  [source] = interpreter.get_input_details()
  [target] = interpreter.get_output_details()

  def predict(images: np.ndarray) -> np.ndarray:
    logits = []
    for image in images:
      interpreter.set_tensor(source['index'], image[None].astype(np.float32))
      interpreter.invoke()
      logits.append(interpreter.get_tensor(target['index'])[0].copy())
    return np.stack(logits)
  return predict


def saved_model_predictor(path: str) -> Callable[[np.ndarray], np.ndarray]:
  function = tf.saved_model.load(path).signatures['serving_default']
  return lambda images: np.concatenate(
      [next(iter(function(images=tf.constant(image[None])).values())).numpy() for image in images])


def jax_predictor(model: nn.Module, variables: dict) -> Callable[[np.ndarray], np.ndarray]:
  apply = jax.jit(lambda images: model.apply(variables, images, train=False))
  return lambda images: np.asarray(apply(images))


def _images(batches, limit: int):
  """(images, labels) of the real (unpadded) examples of `batches`, at most `limit`."""
  images, labels = [], []
  for batch in batches:
    keep = batch['mask'].astype(bool)
    images.append(batch['image'][keep])
    labels.append(batch['label'][keep])
    if limit >= 0 and sum(len(x) for x in labels) >= limit:
      break
  images, labels = np.concatenate(images), np.concatenate(labels)
  return (images, labels) if limit < 0 else (images[:limit], labels[:limit])


def export_run(workdir: str, fmt: str, quantize: str, weights: str, output: str | None,
               eval_examples: int, calibration_examples: int) -> dict:
  check_choice('format', fmt, FORMATS)
  check_choice('quantize', quantize, QUANTIZATIONS)
  check_choice('weights', weights, ('raw', 'ema'))
  if fmt == 'saved_model' and quantize != 'none':
    raise ConfigError(f'quantize={quantize} is not allowed with format=saved_model; only none')
  path = os.path.join(workdir, checkpointing.CONFIG_FILE)
  if not os.path.exists(path):
    raise ConfigError(f'--workdir={workdir} holds no run ({path} is missing)')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.init_from = ''  # the checkpoint holds the weights
  model, builder, spec, _, state = train.restore_latest_run(config, workdir)
  if state is None:
    raise ConfigError(f'--workdir={workdir} has no checkpoint to export')
  state = jax.tree.map(np.asarray, state)
  step = int(state.step)
  variables = {'params': state.params if weights == 'raw' else state.ema_params,
               'batch_stats': state.batch_stats}
  size = config.input.image_size
  eval_images, eval_labels = _images(input_pipeline.eval_batches(builder, config, spec),
                                     eval_examples)
  output = output or os.path.join(
      workdir, 'export', f'model_{quantize}.tflite' if fmt == 'tflite' else 'saved_model')
  os.makedirs(os.path.dirname(output), exist_ok=True)
  if fmt == 'tflite':
    calibration = None
    if quantize == 'int8':
      train_split = config.copy_and_resolve_references()
      train_split.eval_split = config.train_split
      calibration, _ = _images(input_pipeline.eval_batches(builder, train_split, spec),
                               calibration_examples)
    flatbuffer = to_tflite(model, variables, size, quantize, calibration)
    with open(output, 'wb') as f:
      f.write(flatbuffer)
    predict = tflite_predictor(flatbuffer)
    size_bytes = len(flatbuffer)
  else:
    save_saved_model(model, variables, size, output)
    predict = saved_model_predictor(output)
    size_bytes = sum(os.path.getsize(os.path.join(d, f))
                     for d, _, files in os.walk(output) for f in files)
  reference = jax_predictor(model, variables)
  probe = eval_images[:16] if len(eval_images) else np.zeros((1, size, size, 3), np.float32)
  result = {'output': output, 'format': fmt, 'quantize': quantize, 'weights': weights,
            'step': step, 'bytes': size_bytes,
            'probe_examples': len(probe),
            'max_logit_difference': float(np.abs(predict(probe) - reference(probe)).max())}
  if eval_examples != 0 and len(eval_labels):
    ours = np.concatenate([reference(b) for b in np.array_split(
        eval_images, max(len(eval_images) // 256, 1))]).argmax(-1)
    result['examples'] = int(len(eval_labels))
    result['jax_top1'] = float(np.mean(ours == eval_labels))
    result['exported_top1'] = float(np.mean(predict(eval_images).argmax(-1) == eval_labels))
  return result
