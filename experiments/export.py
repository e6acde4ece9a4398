r"""Exports a run's latest checkpoint to TFLite or a SavedModel and checks the result.

  python -m experiments.export --workdir=DIR --format=tflite --quantize=int8

Reports the file size, the largest logit difference from the JAX model on a batch of eval
images, and (unless --eval_examples=0) top-1 of the exported model and of the JAX model on the
eval split. int8 calibrates on --calibration_examples training images (eval preprocessing).
"""

import json
import os
import sys

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from mobilenet_jax import checkpointing, export, input_pipeline, train
from mobilenet_jax.config_errors import ConfigError, check_choice
from mobilenet_jax.datasets import DatasetUnavailable

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run\'s workdir.')
_FORMAT = flags.DEFINE_string('format', 'tflite', f'One of {export.FORMATS}.')
_QUANTIZE = flags.DEFINE_string('quantize', 'none', f'One of {export.QUANTIZATIONS} (tflite).')
_WEIGHTS = flags.DEFINE_string('weights', 'raw', "'raw' or 'ema'.")
_OUTPUT = flags.DEFINE_string('output', None, 'Default: DIR/export/model_<quantize>.tflite or '
                              'DIR/export/saved_model.')
_EVAL_EXAMPLES = flags.DEFINE_integer('eval_examples', -1, 'Eval images for top-1: -1 all, '
                                      '0 none.')
_CALIBRATION = flags.DEFINE_integer('calibration_examples', 200, 'int8 calibration images.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['workdir'])


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
  check_choice('format', fmt, export.FORMATS)
  check_choice('quantize', quantize, export.QUANTIZATIONS)
  check_choice('weights', weights, ('raw', 'ema'))
  if fmt == 'saved_model' and quantize != 'none':
    raise ConfigError(f'quantize={quantize} is not allowed with format=saved_model; only none')
  path = os.path.join(workdir, checkpointing.CONFIG_FILE)
  if not os.path.exists(path):
    raise ConfigError(f'--workdir={workdir} holds no run ({path} is missing)')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.init_from = ''  # the checkpoint holds the weights
  step, state, model, builder, spec = _restore(config, workdir)
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


def _restore(config, workdir):
  model, resuming, builder, spec = train._prepare(config, workdir)  # pylint: disable=protected-access
  runner = train.Runner(model, config, spec, num_steps=1)
  manager = checkpointing.create_manager(workdir, config.keep_checkpoints, asynchronous=False)
  state = checkpointing.restore_latest(manager, runner.abstract_state) if resuming else None
  manager.close()
  if state is None:
    raise ConfigError(f'--workdir={workdir} has no checkpoint to export')
  state = jax.tree.map(np.asarray, state)
  return int(state.step), state, model, builder, spec


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:
    result = export_run(_WORKDIR.value, _FORMAT.value, _QUANTIZE.value, _WEIGHTS.value,
                        _OUTPUT.value, _EVAL_EXAMPLES.value, _CALIBRATION.value)
  except (ConfigError, DatasetUnavailable) as e:
    sys.exit(f'error: {e}')
  if _JSON.value:
    print(json.dumps(result))
    return
  print(f"{result['output']}: {result['bytes'] / 1e6:.2f} MB ({result['format']}, "
        f"quantize={result['quantize']}, {result['weights']} weights of step {result['step']})")
  print(f"  max |logit difference| from JAX on {result['probe_examples']} eval images: "
        f"{result['max_logit_difference']:.2e}")
  if 'exported_top1' in result:
    print(f"  top-1 on {result['examples']} eval images: exported {result['exported_top1']:.4f}, "
          f"JAX {result['jax_top1']:.4f}")


if __name__ == '__main__':
  app.run(main)
