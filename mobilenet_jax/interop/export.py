"""Trained models out to TensorFlow: a SavedModel, or TFLite (float32, float16, dynamic-range
or int8 weights and activations), through jax2tf, each checked against the JAX model.

The exported function takes a batch of one normalized NHWC float32 image (as the input pipeline
makes them) and returns logits. The model is rebuilt for export with the plain `grouped`
depthwise and `conv` implementations, which the converter maps onto TFLite's own
DEPTHWISE_CONV_2D and CONV_2D kernels (the CPU-speed formulations would become dozens of
elementwise ops); the parameters are the same.
"""

import dataclasses
from collections.abc import Callable, Iterable

import flax.linen as nn
import jax
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

FORMATS = ('tflite', 'saved_model')
QUANTIZATIONS = ('none', 'float16', 'dynamic', 'int8')
WEIGHTS = ('raw', 'ema')


def with_int8_activations(model: nn.Module) -> nn.Module:
  """The model with the exact GELU (Hybrid-L) as its tanh form, for int8: jax2tf writes erf as
  a polynomial of ~40 elementwise ops whose int8 kernels abort the TFLite interpreter, while the
  tanh form is three ops that have int8 kernels. The two differ by under 1e-3, far below int8's
  own error; the export's check measures the result against the exact model."""
  arch = model.architecture
  tanh = lambda name: 'gelu_tanh' if name == 'gelu' else name
  return model.clone(architecture=dataclasses.replace(
      arch, layers=tuple(dataclasses.replace(layer, activation=tanh(layer.activation))
                         for layer in arch.layers),
      head_activation=tanh(arch.head_activation)))


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
  if quantize == 'int8':
    model = with_int8_activations(model)
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
