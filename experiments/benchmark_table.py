r"""docs/speed.md's grid: experiments.benchmark against PyTorch over families, modes and sizes.

  python -m experiments.benchmark_table --processes=3 --out=docs/benchmark.json

Each cell runs `python -m experiments.benchmark --compare_torch --json` in `--processes` fresh
processes (these machines are noisy) and reports the median of their ratios to PyTorch; the
cells whose processes disagree by more than a fifth are listed after the table, to run again.
"""

import itertools
import json
import statistics
import subprocess
import sys

from absl import flags

from experiments import cli
from mobilenet_jax.errors import UserError
from mobilenet_jax.tools import benchmarking

_FAMILIES = flags.DEFINE_list('families', ['v3_large', 'v3_small', 'v2', 'v1', 'v4_conv_small'],
                                'Configs.')
_MODES = flags.DEFINE_list('modes', ['train', 'infer'], 'Benchmark modes.')
_SIZES = flags.DEFINE_list('sizes', ['224/32', '32/256'], 'image_size/batch pairs.')
_PROCESSES = flags.DEFINE_integer('processes', 3, 'Processes per cell; the median is reported.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Rounds per process.')
_OUT = flags.DEFINE_string('out', None, 'Where to write every measurement as JSON.')


def _measure(family: str, mode: str, size: str, batch: str) -> dict:
  command = [sys.executable, '-m', 'experiments.benchmark', f'--config=configs/{family}.py',
             f'--mode={mode}', f'--batch={batch}', f'--config.input.image_size={size}',
             f'--steps={_STEPS.value}', f'--rounds={_ROUNDS.value}', '--compare_torch', '--json']
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  if done.returncode:  # the benchmark's own one-line error, or the last line of a crash
    lines = done.stderr.strip().splitlines() or [f'exit status {done.returncode}']
    raise UserError(f'{family} {mode} {size}/{batch}: {lines[-1].removeprefix("error: ")}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  cells = []
  print('| family | mode | size/batch | ours img/s | PyTorch img/s | ours / PyTorch | compile s |')
  print('|---|---|---|---|---|---|---|')
  for family, mode, size_batch in itertools.product(_FAMILIES.value, _MODES.value, _SIZES.value):
    size, batch = size_batch.split('/')
    runs = [_measure(family, mode, size, batch) for _ in range(_PROCESSES.value)]
    median = lambda key: statistics.median(r[key] for r in runs)  # pylint: disable=cell-var-from-loop
    ratios = [r['ratio_vs_torch'] for r in runs]
    cells.append({'family': family, 'mode': mode, 'image_size': int(size), 'batch': int(batch),
                  'ratio_vs_torch': median('ratio_vs_torch'), 'runs': runs,
                  'processes_disagree': benchmarking.processes_disagree(ratios)})
    print(f'| {family} | {mode} | {size}/{batch} | {median("images_per_second"):.1f} | '
          f'{median("torch_images_per_second"):.1f} | {median("ratio_vs_torch"):.2f}x | '
          f'{median("compile_seconds"):.1f} |', flush=True)
  for cell in cells:
    if cell['processes_disagree']:
      ratios = ', '.join(f"{r['ratio_vs_torch']:.2f}x" for r in cell['runs'])
      print(f"note: {cell['family']} {cell['mode']} {cell['image_size']}/{cell['batch']}: its "
            f'processes disagree ({ratios}); run the cell again before trusting the median',
            flush=True)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(cells, f, indent=1)


if __name__ == '__main__':
  cli.run(main)
