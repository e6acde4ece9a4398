r"""Train-step or inference speed of a MobileNet, optionally against the same one in PyTorch.

  python -m experiments.benchmark --config=configs/v3_large.py --mode=train --batch=32
  python -m experiments.benchmark --config=configs/v2.py --mode=infer --batch=256 \
      --config.input.image_size=32 --compare_torch --json
  python -m experiments.benchmark --config=configs/v4_conv_small.py:fashion_mnist --batch=128 \
      --teacher=configs/v4_conv_small.py:fashion_mnist_long   # a train step that distills

The JAX side runs the training loop's own jit-compiled step (optimizer, EMA, donated state) on
synthetic data; inference is the eval-mode forward pass. With --teacher (repeated for an ensemble), the train step
also runs those teachers (random weights of their configs: the cost is the same), as
`config.distill.teachers` would. With --compare_torch, the PyTorch model of the same
architecture (torchvision's; timm's for V4; V1 built from our table; channels-last, as many threads
as XLA uses) runs in the same process, in
rounds alternating with ours, so both see the same machine load; `ratio_vs_torch` is our
images/s over PyTorch's (above 1: faster).
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax.tools import benchmarking  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Model config file.')
_MODE = flags.DEFINE_enum('mode', 'train', benchmarking.MODES,
                          'Time the train step or inference.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds (alternating with PyTorch if compared).')
_COMPARE_TORCH = flags.DEFINE_bool('compare_torch', False, 'Also time the PyTorch model.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')
_TEACHER = flags.DEFINE_multi_string(
    'teacher', [], 'Time a train step that distills this teacher, a config file '
    '(configs/FILE.py[:VARIANTS]) with random weights; repeat for an ensemble.')
flags.mark_flags_as_required(['config'])


def _describe(r: dict) -> str:
  ms = r['step_ms']
  lines = [
      f"{r['config']} {r['mode']}, batch {r['batch']} at {r['image_size']} px on "
      f"{r['devices']} {r['backend']} device(s): {r['params']:,} params, "
      f"{r['madds'] / 1e6:.1f}M MAdds"
      + (f"; distilling {len(r['teachers'])} teacher{'s' if len(r['teachers']) > 1 else ''}"
         f" ({', '.join(r['teachers'])})" if r.get('teachers') else ''),
      f"  compile {r['compile_seconds']:.1f} s, XLA peak memory "
      + (f"{r['xla_peak_memory_mb']:.0f} MiB" if r['xla_peak_memory_mb'] is not None else 'n/a')
      + f", process peak RSS {r['process_peak_rss_mb']:.0f} MiB",
      f"  JAX:     step {ms['median']:.1f} ms (min {ms['min']:.1f}, max {ms['max']:.1f}), "
      f"{r['images_per_second']:.1f} img/s"]
  if 'ratio_vs_torch' in r:
    tms = r['torch_step_ms']
    lines.append(f"  PyTorch: step {tms['median']:.1f} ms (min {tms['min']:.1f}, max "
                 f"{tms['max']:.1f}), {r['torch_images_per_second']:.1f} img/s, "
                 f"{r['torch_threads']} threads")
    lines.append(f"  ours / PyTorch: {r['ratio_vs_torch']:.2f}x")
  return '\n'.join(lines)


def main(argv):
  del argv
  # Compile time is one of the figures: a persistent cache (JAX_COMPILATION_CACHE_DIR) would
  # report its load time instead.
  jax.config.update('jax_enable_compilation_cache', False)
  result = benchmarking.benchmark(_CONFIG.value, _MODE.value, _BATCH.value, _STEPS.value,
                                  _ROUNDS.value, _COMPARE_TORCH.value, tuple(_TEACHER.value))
  print(json.dumps(result) if _JSON.value else _describe(result), flush=True)


if __name__ == '__main__':
  cli.run(main)
