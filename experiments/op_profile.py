r"""Where a step's time goes, by op class, from XLA's own trace of the jit-compiled step, and
where PyTorch's goes beside it.

  python -m experiments.op_profile --config=configs/v2.py --batch=32
  python -m experiments.op_profile --config=configs/v3_large.py --batch=32 --top=15 --json
  python -m experiments.op_profile --config=configs/v3_small.py --mode=infer --compare_torch

The step is the training loop's own (the benchmark's, on synthetic data), or the eval-mode
forward pass (`--mode=infer`). With `--compare_torch` the benchmark's PyTorch model is profiled
too (torch.profiler) and each class is printed as milliseconds of each framework's untraced
step (its share of the op time times the step), with the difference: the classes where ours
spends more are what holds the ratio. Classes
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
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'infer'], 'Train step or inference.')
_COMPARE_TORCH = flags.DEFINE_bool('compare_torch', False,
                                   "Profile PyTorch's step too and print the two side by side.")
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')
flags.mark_flags_as_required(['config'])


def describe(result: dict, top: int) -> str:
  total = result['op_ms_per_step']
  lines = [f"{result['config']} {result['mode']} step, batch {result['batch']} at "
           f"{result['image_size']} px: {result['untraced_step_ms']:.0f} ms a step untraced "
           f'(median of 3), {total:.0f} ms of op time per step (summed over threads)',
           f"{'class':<28} {'ms/step':>9} {'share':>7}"]
  for name, ms in result['classes_ms'].items():
    lines.append(f'{name:<28} {ms:>9.1f} {100 * ms / total:>6.1f}%')
  if top:
    lines.append(f'slowest {top} instructions:')
    lines += [f"  {row['op']:<40} {row['class']:<28} {row['ms']:>7.1f} ms"
              for row in result['slowest'][:top]]
  return '\n'.join(lines)


def side_by_side(ours: dict, theirs: dict) -> str:
  mine, torch = profiling.in_step_ms(ours), profiling.in_step_ms(theirs)
  ratio = theirs['untraced_step_ms'] / ours['untraced_step_ms']
  lines = [f"ms of the untraced step: ours {ours['untraced_step_ms']:.0f}, PyTorch's "
           f"{theirs['untraced_step_ms']:.0f} (ours / PyTorch {ratio:.2f}x in images per second)",
           f"{'class':<28} {'ours':>8} {'PyTorch':>8} {'ours - PyTorch':>15}"]
  for name in sorted(mine, key=lambda name: torch[name] - mine[name]):
    lines.append(f'{name:<28} {mine[name]:>8.1f} {torch[name]:>8.1f} '
                 f'{mine[name] - torch[name]:>+15.1f}')
  return '\n'.join(lines)


def main(argv):
  del argv
  config, mode = _CONFIG.value, _MODE.value
  result = profiling.profile_step(config, mode, _BATCH.value, _STEPS.value)
  theirs = None
  if _COMPARE_TORCH.value:
    theirs = profiling.profile_torch_step(config, mode, _BATCH.value, _STEPS.value)
  if _JSON.value:
    result['slowest'] = result['slowest'][:_TOP.value]
    if theirs:
      result['torch'] = theirs
      result['in_step_ms'] = {'ours': profiling.in_step_ms(result),
                              'torch': profiling.in_step_ms(theirs)}
    print(json.dumps(result), flush=True)
  else:
    print(describe(result, _TOP.value), flush=True)
    if theirs:
      print(side_by_side(result, theirs), flush=True)


if __name__ == '__main__':
  cli.run(main)
