r"""Exports a run's latest checkpoint to TFLite or a SavedModel and checks the result.

  python -m experiments.export --workdir=DIR --format=tflite --quantize=int8

Reports the file size, the largest logit difference from the JAX model on a batch of eval
images, and (unless --eval_examples=0) top-1 of the exported model and of the JAX model on the
eval split. int8 calibrates on --calibration_examples training images (eval preprocessing).
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax.interop import export  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.tools import exporting  # pylint: disable=g-import-not-at-top,wrong-import-position

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run\'s workdir.')
_FORMAT = flags.DEFINE_enum('format', 'tflite', export.FORMATS, 'What to export to.')
_QUANTIZE = flags.DEFINE_enum('quantize', 'none', export.QUANTIZATIONS,
                              'Quantization (tflite only).')
_WEIGHTS = flags.DEFINE_enum('weights', 'raw', export.WEIGHTS, 'The raw or the EMA weights.')
_OUTPUT = flags.DEFINE_string('output', None, 'Default: DIR/export/model_<quantize>.tflite or '
                              'DIR/export/saved_model.')
_EVAL_EXAMPLES = flags.DEFINE_integer('eval_examples', -1, 'Eval images for top-1: -1 all, '
                                      '0 none.')
_CALIBRATION = flags.DEFINE_integer('calibration_examples', 200, 'int8 calibration images.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  result = exporting.export_run(_WORKDIR.value, _FORMAT.value, _QUANTIZE.value, _WEIGHTS.value,
                                _OUTPUT.value, _EVAL_EXAMPLES.value, _CALIBRATION.value)
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
  cli.run(main)
