"""Exporting a trained run: its latest checkpoint to TFLite or a SavedModel, then the export
checked against the JAX model on the run's own eval data (logit difference and top-1)."""

import os

import jax
import numpy as np

from mobilenet_jax import errors, train
from mobilenet_jax.data import input_pipeline
from mobilenet_jax.interop import export


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
  """Exports the latest checkpoint of `workdir` and measures the export against the JAX model."""
  errors.check_choice('format', fmt, export.FORMATS)
  errors.check_choice('quantize', quantize, export.QUANTIZATIONS)
  errors.check_choice('weights', weights, export.WEIGHTS)
  if fmt == 'saved_model' and quantize != 'none':
    raise errors.ConfigError(f'quantize={quantize} is not allowed with format=saved_model; '
                             'only none')
  run = train.restore_latest_run(workdir)
  config, model, builder, spec = run.config, run.setup.model, run.setup.builder, run.setup.spec
  state = jax.tree.map(np.asarray, run.state)
  step = int(state.step)
  variables = state.variables(weights)
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
    flatbuffer = export.to_tflite(model, variables, size, quantize, calibration)
    with open(output, 'wb') as f:
      f.write(flatbuffer)
    predict = export.tflite_predictor(flatbuffer)
    size_bytes = len(flatbuffer)
  else:
    export.save_saved_model(model, variables, size, output)
    predict = export.saved_model_predictor(output)
    size_bytes = sum(os.path.getsize(os.path.join(d, f))
                     for d, _, files in os.walk(output) for f in files)
  reference = export.jax_predictor(model, variables)
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
