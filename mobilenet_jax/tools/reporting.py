"""A sweep's report: one row per run (results.csv, results.md) and its figures.

Reads only what runs leave in their workdirs (results.json when finished, else config.json and
metrics.jsonl so far), so it works on a sweep still in progress.
"""

import csv
import os
from typing import Any

import matplotlib

matplotlib.use('Agg')  # files only; no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax.models import complexity, registry  # pylint: disable=wrong-import-position
from mobilenet_jax.tools import sweeps  # pylint: disable=wrong-import-position
from mobilenet_jax.train import workdir as run_dir  # pylint: disable=wrong-import-position

COLUMNS = ('run', 'family', 'overrides', 'params', 'madds', 'top1', 'ema_top1',
           'images_per_second', 'train_seconds', 'status')


def _run_dirs(sweep_dir: str) -> list[tuple[str, dict]]:
  """(name, overrides) of each run: the manifest's order, then any other run folder."""
  manifest = run_dir.read_json(os.path.join(sweep_dir, sweeps.SWEEP_FILE)) or []
  runs = [(r['name'], r['overrides']) for r in manifest]
  known = {name for name, _ in runs}
  for name in sorted(os.listdir(sweep_dir)):
    path = os.path.join(sweep_dir, name)
    if name not in known and os.path.isdir(path) and run_dir.state(path) != 'pending':
      recorded = run_dir.read_json(os.path.join(path, run_dir.SWEEP_RUN_FILE))
      runs.append((name, recorded.get('overrides', {})))
  return runs


def _family(config_name: str) -> str:
  """The family of a run recorded before configs carried `family` ('v2:fashion_mnist')."""
  return config_name.split(':')[0]


def _complexity(config: ml_collections.ConfigDict) -> tuple[int, int]:
  return complexity.model_totals(registry.create_model(config.model), config.input.image_size)


def collect(sweep_dir: str) -> list[dict[str, Any]]:
  """One row per run (COLUMNS), plus its 'curves': the metrics.jsonl records so far."""
  rows = []
  for name, overrides in _run_dirs(sweep_dir):
    workdir = os.path.join(sweep_dir, name)
    results = run_dir.read_results(workdir)
    curves = run_dir.read_metrics(workdir)
    state = run_dir.state(workdir)
    row = {'run': name, 'status': 'unfinished' if state == 'started' else state, 'curves': curves,
           'overrides': ', '.join(f'{k}={v}' for k, v in overrides.items()),
           'error': run_dir.read_json(os.path.join(workdir, run_dir.FAILURE_FILE)).get('error')}
    if results:
      row.update({k: results.get(k) for k in ('params', 'madds', 'top1', 'ema_top1',
                                               'images_per_second', 'train_seconds')})
      row['family'] = results.get('family') or _family(results['config'])
    else:
      saved = run_dir.read_json(os.path.join(workdir, run_dir.CONFIG_FILE))
      evals = [r for r in curves if 'eval_raw/top1' in r]
      trains = [r for r in curves if 'train_images_per_second' in r]
      row.update({
          'family': saved.get('family') or _family(saved.get('name', '')) or None,
          'params': None, 'madds': None,
          'train_seconds': trains[-1].get('train_seconds') if trains else None,  # so far
          'top1': evals[-1]['eval_raw/top1'] if evals else None,
          'ema_top1': evals[-1]['eval_ema/top1'] if evals else None,
          'images_per_second': trains[-1]['train_images_per_second'] if trains else None})
      if saved:
        row['params'], row['madds'] = _complexity(ml_collections.ConfigDict(saved))
    rows.append(row)
  return rows


def _cell(column: str, value: Any) -> str:
  if value is None:
    return ''
  if column == 'madds':
    return f'{value / 1e6:.1f}M'
  if column == 'params':
    return f'{value / 1e6:.3f}M'
  if column in ('top1', 'ema_top1'):
    return f'{100 * value:.2f}'
  if column == 'images_per_second':
    return f'{value:.0f}'
  if column == 'train_seconds':
    return f'{value / 60:.1f} min'
  return str(value)


def write_table(rows: list[dict], sweep_dir: str) -> list[str]:
  csv_path = os.path.join(sweep_dir, 'results.csv')
  with open(csv_path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for row in rows:
      writer.writerow(['' if row[c] is None else row[c] for c in COLUMNS])
  md_path = os.path.join(sweep_dir, 'results.md')
  headers = ('run', 'family', 'overrides', 'params', 'MAdds', 'top-1 %', 'EMA top-1 %',
             'img/s', 'train time', 'status')
  lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
  for row in rows:
    cells = [_cell(c, row[c]) for c in COLUMNS]
    if row['error']:
      cells[-1] += f': {row["error"]}'
    lines.append('| ' + ' | '.join(cell.replace('|', '\\|') for cell in cells) + ' |')
  with open(md_path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return [csv_path, md_path]


def family_points(rows: list[dict], x_of, y_key: str = 'top1') -> dict[str, list[tuple]]:
  """{family: [(x_of(row), top-1 in %, run name), ...] in x order}, for runs with both."""
  points = {}
  for row in rows:
    x = x_of(row)
    if row['family'] and row[y_key] is not None and x:
      points.setdefault(row['family'], []).append((x, 100 * row[y_key], row['run']))
  return {family: sorted(points[family]) for family in sorted(points)}


def _plot_families(ax, rows: list[dict], x_of, y_key: str = 'top1') -> None:
  """A labelled curve per family through its runs: x_of(row) against top-1, x logarithmic."""
  for family, points in family_points(rows, x_of, y_key).items():
    xs, ys, _ = zip(*points)
    ax.plot(xs, ys, marker='o', label=family)
    for x, y, name in points:
      ax.annotate(_short_label(name, family), (x, y), fontsize=7,
                  textcoords='offset points', xytext=(3, 3))
  ax.set_xscale('log')
  ax.set_ylabel('top-1 (%)')
  ax.grid(alpha=0.3)


def _legend(ax) -> None:
  if ax.get_legend_handles_labels()[0]:  # a sweep with no finished run has no curve yet
    ax.legend()


def plot_pareto(rows: list[dict], path: str) -> str:
  """Top-1 against MAdds and against params, one labelled curve per family."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, (key, label) in zip(axes, (('madds', 'multiply-adds (millions)'),
                                     ('params', 'parameters (millions)'))):
    _plot_families(ax, rows, lambda r, key=key: r[key] and r[key] / 1e6)
    ax.set_xlabel(label)
  _legend(axes[0])
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def train_minutes(row: dict) -> float | None:
  return row['train_seconds'] and row['train_seconds'] / 60


def plot_time(rows: list[dict], path: str) -> str:
  """Test top-1 (raw and EMA weights) against training time: what each minute of a recipe buys,
  for sweeps over its length (epochs) or anything else that costs time."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for ax, (key, title) in zip(axes, (('top1', 'weights'), ('ema_top1', 'EMA weights'))):
    _plot_families(ax, rows, train_minutes, key)
    ax.set_xlabel('training time (minutes)')
    ax.set_title(title, fontsize=9)
  _legend(axes[0])
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _short_label(name: str, family: str) -> str:
  parts = [p.split('=')[-1] for p in name.split(',') if p != family]
  return ','.join(parts)


def plot_curves(rows: list[dict], path: str) -> str:
  """Every run's eval top-1 and train loss against step, overlaid."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for row in rows:
    evals = [(r['step'], 100 * r['eval_raw/top1']) for r in row['curves'] if 'eval_raw/top1' in r]
    losses = [(r['step'], r['train_loss']) for r in row['curves'] if 'train_loss' in r]
    if evals:
      axes[0].plot(*zip(*evals), marker='.', label=row['run'])
    if losses:
      axes[1].plot(*zip(*losses), label=row['run'], alpha=0.8)
  axes[0].set_ylabel('eval top-1 (%)')
  axes[1].set_ylabel('train loss')
  for ax in axes:
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  if any(row['curves'] for row in rows):
    axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write_report(sweep_dir: str) -> list[str]:
  """Writes results.csv, results.md, pareto.png, time.png and curves.png in `sweep_dir`; returns
  paths."""
  rows = collect(sweep_dir)
  return [*write_table(rows, sweep_dir),
          plot_pareto(rows, os.path.join(sweep_dir, 'pareto.png')),
          plot_time(rows, os.path.join(sweep_dir, 'time.png')),
          plot_curves(rows, os.path.join(sweep_dir, 'curves.png'))]
