"""Building sweeps: lists of override dicts ({'model.width_multiplier': 0.5, ...}), one per run.

  product(sweep('learning_rate', [1e-3, 4e-3]), sweep('weight_decay', [0.01, 0.05]))  # 4 runs
  zipped(sweep('input.image_size', [224, 160]), sweep('batch_size', [256, 512]))      # 2 runs

The key 'config' names the config file of a run ('configs/v2.py:fashion_mnist'), for sweeps
across families; every other key is a config field, dotted as on the command line.
"""

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

Overrides = dict[str, Any]


def sweep(field: str, values: Iterable[Any]) -> list[Overrides]:
  return [{field: value} for value in values]


def fixed(**fields: Any) -> list[Overrides]:
  """One run's overrides (use '__' for dots: fixed(model__dropout_rate=0.1))."""
  return [{key.replace('__', '.'): value for key, value in fields.items()}]


def product(*sweeps: Sequence[Overrides]) -> list[Overrides]:
  """Every combination, the last sweep varying fastest."""
  return [_merge(combination) for combination in itertools.product(*sweeps)]


def zipped(*sweeps: Sequence[Overrides]) -> list[Overrides]:
  """The i-th runs of sweeps of equal length, merged."""
  lengths = {len(s) for s in sweeps}
  if len(lengths) > 1:
    raise ValueError(f'zipped sweeps must have equal lengths, got {sorted(lengths)}')
  return [_merge(runs) for runs in zip(*sweeps)]


def chain(*sweeps: Sequence[Overrides]) -> list[Overrides]:
  return [dict(run) for s in sweeps for run in s]


def _merge(runs: Iterable[Overrides]) -> Overrides:
  merged: Overrides = {}
  for run in runs:
    for key, value in run.items():
      if key in merged and merged[key] != value:
        raise ValueError(f'sweeps set {key} twice: {merged[key]!r} and {value!r}')
      merged[key] = value
  return merged
