"""The GPU grid against timm as data: its cells, the order its runs are tried in, whether the
next one fits before the deadline, and its tables. No I/O: `experiments/gpu_grid.py` runs it.

A cell is a model and a mode (train or inference); each cell has three runs: ours ('ours'),
timm's model eager ('torch') and `torch.compile`d ('torch_compiled'). The reference runs eager
in every cell first (about ten seconds a cell), then ours cell by cell, train cells first, then
timm compiled in as many cells as the time left allows, train cells first.
"""

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

KINDS = ('torch', 'ours', 'torch_compiled')
KIND_NAMES = {'ours': 'ours', 'torch': 'timm eager', 'torch_compiled': 'timm compiled'}
# Each run's result keys carry its prefix (benchmarking.RUNS).
PREFIXES = {'ours': '', 'torch': 'torch_', 'torch_compiled': 'torch_compiled_'}
FAMILIES = ('v2', 'v3_large', 'v4_conv_small', 'v4_hybrid_medium')
MODES = ('train', 'infer')
# The goal: ours at least as fast as timm eager, and at least 0.8x timm compiled.
GOALS = {'torch': 1.0, 'torch_compiled': 0.8}

# Seconds a run of one cell is expected to take until one of its kind has been seen, from the
# H200's figures at batch 32 (docs/benchmark_gpu_h200_auto.txt: 'auto' measures every shape of
# a train step in about a minute, then XLA compiles it in 25-30 s); process start included.
PRIOR_SECONDS = {('torch', 'train'): 20, ('torch', 'infer'): 10,
                 ('ours', 'train'): 150, ('ours', 'infer'): 75,
                 ('torch_compiled', 'train'): 120, ('torch_compiled', 'infer'): 60}


@dataclasses.dataclass(frozen=True)
class Cell:
  family: str
  mode: str

  @property
  def name(self) -> str:
    return f'{self.family}:{self.mode}'


@dataclasses.dataclass(frozen=True)
class Job:
  """One process: a kind of run over cells, in order."""
  kind: str
  cells: tuple[Cell, ...]


def parse_cells(names: Iterable[str]) -> tuple[Cell, ...]:
  """'family:mode' names (a bare family: both modes), train cells first, each once."""
  cells = []
  for name in names:
    family, _, mode = name.partition(':')
    cells += [Cell(family, m) for m in ((mode,) if mode else MODES)]
  order = {mode: i for i, mode in enumerate(MODES)}
  return tuple(sorted(dict.fromkeys(cells), key=lambda c: order.get(c.mode, len(order))))


def plan(cells: Sequence[Cell], kinds: Iterable[str]) -> list[Job]:
  """The jobs in the order they run: timm eager over every cell in one process, ours in one
  process a cell (XLA's peak memory cannot be reset within a process), timm compiled over every
  cell in one process; `cells` already train first."""
  kinds = set(kinds)
  jobs = []
  if 'torch' in kinds:
    jobs.append(Job('torch', tuple(cells)))
  if 'ours' in kinds:
    jobs += [Job('ours', (cell,)) for cell in cells]
  if 'torch_compiled' in kinds:
    jobs.append(Job('torch_compiled', tuple(cells)))
  return jobs


def expected_seconds(kind: str, mode: str, seen: Mapping[tuple[str, str], float]) -> float:
  """How long the next run of `kind` in `mode` should take: the longest of its kind seen so far,
  else the prior."""
  return seen.get((kind, mode), PRIOR_SECONDS[(kind, mode)])


def fits(kind: str, mode: str, seconds_left: float,
         seen: Mapping[tuple[str, str], float]) -> str | None:
  """None when the run is expected to end before the deadline, else why it is skipped."""
  need = expected_seconds(kind, mode, seen)
  if need <= seconds_left:
    return None
  return f'skipped at the deadline: about {need:.0f} s expected, {max(seconds_left, 0):.0f} s left'


def _number(run: Mapping | None, key: str, form: str) -> str:
  if run is None:
    return '-'
  if 'skipped' in run or 'failed' in run or 'cut' in run:
    return 'skipped' if 'skipped' in run else 'failed' if 'failed' in run else 'cut'
  value = run.get(key)
  return '-' if value is None else format(value, form)


def ratio(ours: Mapping | None, theirs: Mapping | None) -> float | None:
  """Our images/s over theirs, when both ran."""
  if not ours or not theirs or 'images_per_second' not in ours or (
      'images_per_second' not in theirs):
    return None
  return ours['images_per_second'] / theirs['images_per_second']


def under_goal(cells: Sequence[Mapping]) -> list[str]:
  """The cells whose ratio misses the goal, one phrase each ('v2 train: 0.91x timm eager')."""
  misses = []
  for cell in cells:
    for kind, goal in GOALS.items():
      value = ratio(cell['runs'].get('ours'), cell['runs'].get(kind))
      if value is not None and value < goal:
        misses.append(f"{cell['family']} {cell['mode']}: {value:.2f}x {KIND_NAMES[kind]} "
                      f'(goal {goal:.1f}x)')
  return misses


def markdown(cells: Sequence[Mapping], header: Sequence[str]) -> str:
  """The summary table (images/s and ratios), the per-run table (step time, compile time, peak
  memory), and what was under the goal, skipped or failed."""
  lines = [*header, '',
           '| model | mode | batch | ours img/s | timm eager img/s | timm compiled img/s | '
           'ours / eager | ours / compiled |',
           '|---|---|---|---|---|---|---|---|']
  for cell in cells:
    runs = cell['runs']
    ratios = [ratio(runs.get('ours'), runs.get(kind)) for kind in ('torch', 'torch_compiled')]
    lines.append(
        f"| {cell['family']} | {cell['mode']} | {cell['batch']} | "
        + ' | '.join(_number(runs.get(kind), 'images_per_second', '.0f')
                     for kind in ('ours', 'torch', 'torch_compiled'))
        + ' | ' + ' | '.join('-' if r is None else f'{r:.2f}x' for r in ratios) + ' |')
  lines += ['', '| model | mode | run | img/s | step ms (median, min-max) | compile s | '
                'peak MiB |', '|---|---|---|---|---|---|---|']
  notes = []
  for cell in cells:
    for kind in ('ours', 'torch', 'torch_compiled'):
      run = cell['runs'].get(kind)
      if run is None:
        continue
      for why in ('skipped', 'failed', 'cut'):
        if why in run:
          notes.append(f"{cell['family']} {cell['mode']}, {KIND_NAMES[kind]}: {run[why]}")
      ms = run.get('step_ms')
      step = '-' if not ms else f"{ms['median']:.1f} ({ms['min']:.1f}-{ms['max']:.1f})"
      # At most: compiling ('auto''s measurements) held more than the steps did.
      bound = '≤' if run.get('peak_memory_by_step') is False else ''
      lines.append(f"| {cell['family']} | {cell['mode']} | {KIND_NAMES[kind]} | "
                   f"{_number(run, 'images_per_second', '.0f')} | {step} | "
                   f"{_number(run, 'compile_seconds', '.1f')} | "
                   f"{bound}{_number(run, 'peak_memory_mb', '.0f')} |")
  misses = under_goal(cells)
  lines += ['', 'Under the goal (ours at least 1.0x timm eager, 0.8x timm compiled): '
            + ('; '.join(misses) if misses else 'none measured.')]
  lines += [f'- {note}' for note in notes]
  return '\n'.join(lines) + '\n'


def run_figures(result: Mapping, kind: str) -> dict:
  """One run's figures, without its prefix, out of a `benchmarking.benchmark` result."""
  prefix = PREFIXES[kind]
  figures = {key: result[prefix + key] for key in
             ('images_per_second', 'step_ms', 'compile_seconds', 'peak_memory_mb')
             if prefix + key in result}
  if kind == 'ours':
    figures.update({key: result[key] for key in ('peak_memory_by_step', 'xla_peak_memory_mb',
                                                 'device_kind', 'backend') if key in result})
  else:
    figures.update({key: result[key] for key in ('torch_model', 'torch_device', 'torch_version')
                    if key in result})
  return figures
