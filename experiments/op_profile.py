r"""Where a train step's time goes, by op class, from XLA's own trace of the jit-compiled step.

  python -m experiments.op_profile --config=configs/v2.py --batch=32
  python -m experiments.op_profile --config=configs/v3_large.py --batch=32 --top=15 --json

The step is the training loop's own (the benchmark's, on synthetic data). Classes
(`mobilenet_jax/tools/profiling.py`): depthwise forward, input gradient and kernel gradient; 1x1
and other convolutions and matmuls, forward and backward; batch norm forward and backward;
activations; pads, copies and transposes; the optimizer, EMA and loss; the rest. Times are the
ops' self times summed over threads, per step; the share is of that sum.
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax.tools import profiling  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Model config file.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Traced steps (after five untraced ones).')
_TOP = flags.DEFINE_integer('top', 10, 'Also list this many slowest instructions.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')
flags.mark_flags_as_required(['config'])


def describe(result: dict, top: int) -> str:
  total = result['op_ms_per_step']
  lines = [f"{result['config']} train step, batch {result['batch']} at {result['image_size']} "
           f"px: {result['untraced_step_ms']:.0f} ms a step untraced (median of 3), "
           f'{total:.0f} ms of op time per step (summed over threads)',
           f"{'class':<28} {'ms/step':>9} {'share':>7}"]
  for name, ms in result['classes_ms'].items():
    lines.append(f'{name:<28} {ms:>9.1f} {100 * ms / total:>6.1f}%')
  if top:
    lines.append(f'slowest {top} instructions:')
    lines += [f"  {row['op']:<40} {row['class']:<28} {row['ms']:>7.1f} ms"
              for row in result['slowest'][:top]]
  return '\n'.join(lines)


def main(argv):
  del argv
  result = profiling.profile_train_step(_CONFIG.value, _BATCH.value, _STEPS.value)
  if _JSON.value:
    result['slowest'] = result['slowest'][:_TOP.value]
    print(json.dumps(result), flush=True)
  else:
    print(describe(result, _TOP.value), flush=True)


if __name__ == '__main__':
  cli.run(main)
