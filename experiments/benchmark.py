r"""Train-step or inference speed of a MobileNet, optionally against the same one in PyTorch.

  python -m experiments.benchmark --config=configs/v3_large.py --mode=train --batch=32
  python -m experiments.benchmark --config=configs/v2.py --mode=infer --batch=256 \
      --config.input.image_size=32 --compare_torch --json
  python -m experiments.benchmark --config=configs/v3_large.py --mode=train --batch=256 \
      --config.model.dtype=bfloat16 --compare_torch --timm --torch_compile --warmup=3
  python -m experiments.benchmark --config=configs/v4_conv_small.py:fashion_mnist --batch=128 \
      --teacher=configs/v4_conv_small.py:fashion_mnist_long   # a train step that distills

The JAX side runs the training loop's own jit-compiled step (optimizer, EMA, donated state) on
synthetic data; inference is the eval-mode forward pass. With --teacher (repeated for an
ensemble), the train step also runs those teachers (random weights of their configs: the cost is
the same), as `config.distill.teachers` would. With --compare_torch, the PyTorch model of the
same architecture (torchvision's; timm's for V4; V1 built from our table; channels-last, as many
threads as XLA uses) runs in the same process, in
rounds alternating with ours, so both see the same machine load; `ratio_vs_torch` is our
images/s over PyTorch's (above 1: faster). On a GPU, PyTorch runs there too, as a timm user runs
it: `--timm` takes timm's model for every family, `model.dtype=bfloat16` puts it under
`torch.autocast` to bfloat16, `--torch_compile` adds it `torch.compile`d. The whole GPU grid
against timm is `experiments.gpu_grid`.
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import os  # pylint: disable=g-import-not-at-top,wrong-import-position

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
_TORCH_COMPILE = flags.DEFINE_bool('torch_compile', False,
                                   'Also time the PyTorch model torch.compile\'d.')
_TIMM = flags.DEFINE_bool('timm', False, "PyTorch runs timm's model of every family (default: "
                          "torchvision's V2 and V3, our table's V1, timm's V4).")
_COMPILE_BACKEND = flags.DEFINE_string('torch_compile_backend', 'inductor',
                                       "torch.compile's backend (aot_eager: no code generated)")
_OURS = flags.DEFINE_bool('ours', True, 'Time ours (--noours: PyTorch alone).')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed steps before the timed ones.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')
_TEACHER = flags.DEFINE_multi_string(
    'teacher', [], 'Time a train step that distills this teacher, a config file '
    '(configs/FILE.py[:VARIANTS]) with random weights; repeat for an ensemble.')
flags.mark_flags_as_required(['config'])


def _describe(r: dict) -> str:
  lines = [f"{r['config']} {r['mode']}, batch {r['batch']} at {r['image_size']} px in "
           f"{r['dtype']}: {r['params']:,} params, {r['madds'] / 1e6:.1f}M MAdds"
           + (f"; distilling {len(r['teachers'])} teacher{'s' if len(r['teachers']) > 1 else ''}"
              f" ({', '.join(r['teachers'])})" if r.get('teachers') else '')]
  if 'step_ms' in r:
    lines.append(
        f"  on {r['devices']} {r['backend']} device(s): compile {r['compile_seconds']:.1f} s, XLA "
        'peak memory ' + (f"{r['xla_peak_memory_mb']:.0f} MiB" if r['xla_peak_memory_mb']
                          is not None else 'n/a')
        + f", process peak RSS {r['process_peak_rss_mb']:.0f} MiB")
  for prefix, name in benchmarking.RUNS.items():
    if prefix + 'step_ms' not in r:
      continue
    ms, peak = r[prefix + 'step_ms'], r[prefix + 'peak_memory_mb']
    lines.append(f"  {name or 'JAX'}: step {ms['median']:.1f} ms (min {ms['min']:.1f}, max "
                 f"{ms['max']:.1f}), {r[prefix + 'images_per_second']:.1f} img/s"
                 + (f", first step {r[prefix + 'compile_seconds']:.1f} s" if prefix else '')
                 + (f', device peak {peak:.0f} MiB' if peak is not None else ''))
  if 'torch_model' in r:
    lines.append(f"  PyTorch: {r['torch_model']} on {r['torch_device']}, "
                 f"{r['torch_threads']} threads")
  for prefix in ('torch_', 'torch_compiled_'):
    if f'ratio_vs_{prefix[:-1]}' in r:
      lines.append(f"  ours / {benchmarking.RUNS[prefix]}: {r[f'ratio_vs_{prefix[:-1]}']:.2f}x")
  return '\n'.join(lines)


def main(argv):
  del argv
  # Compile time is one of the figures: a persistent cache (JAX_COMPILATION_CACHE_DIR) would
  # report its load time instead.
  jax.config.update('jax_enable_compilation_cache', False)
  if _COMPARE_TORCH.value or _TORCH_COMPILE.value:
    # Before JAX's backend starts: it would otherwise take 75% of a GPU's memory for itself,
    # leaving PyTorch the rest. Each then holds what it uses.
    os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  result = benchmarking.benchmark(
      _CONFIG.value, _MODE.value, _BATCH.value, _STEPS.value, _ROUNDS.value, _COMPARE_TORCH.value,
      ours=_OURS.value, torch_compile=_TORCH_COMPILE.value, timm=_TIMM.value,
      warmup=_WARMUP.value, compile_backend=_COMPILE_BACKEND.value,
      teachers=tuple(_TEACHER.value))
  print(json.dumps(result) if _JSON.value else _describe(result), flush=True)


if __name__ == '__main__':
  cli.run(main)
