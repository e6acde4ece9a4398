"""The run directory: the names of its files, the config it trains, and its results record.

A run's workdir holds
  config.json      the run's config, written when it starts and checked when it resumes
  dataset.json     its dataset: {"dataset": ..., "classes": [name of label 0, ...]}, written
                   when it starts (what evaluation and prediction name the classes by)
  lock             held (fcntl) by the process that trains in it; names its PID (a local
                   folder only: an object store has no lock)
  checkpoints/     orbax checkpoints, a folder per step
  metrics.jsonl    one JSON object per logged step: {"step": ..., "train_loss": ..., ...}
  results.json     the final record (`results_record`), written when the run ends
  teachers.json    a distilled run's teachers and their weights' checksums, for resumes to match
  implementations.txt  each 'auto' implementation choice of its sessions, a line each
  events.out.tfevents.*  TensorBoard summaries
and, for a run of a sweep (tools/sweeps.py),
  sweep_run.json   the command that runs it
  failure.json     its exit code and last log line, when it failed
  log.txt          its console output
Training, evaluation, export, sweeps and reports all find these files through this module.

The workdir can be a local folder or a URL of a store that TensorFlow's file system knows
(gs://, s3:// with tensorflow-io, ram://): every file here goes through `tf.io.gfile`
(`storage.py`), and the checkpoints through orbax's `etils.epath` (`checkpointing.py`).
"""

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import ml_collections

from mobilenet_jax.errors import ConfigError, MissingRun, WorkdirInUse
from mobilenet_jax.models import architecture
from mobilenet_jax.train import steps
# Where a run directory lives, re-exported: the rest of the package reaches run files through here.
from mobilenet_jax.train.storage import (check_writable, gfile, is_url, join, read_json,
                                         write_atomically, write_json)

CONFIG_FILE = 'config.json'
DATASET_FILE = 'dataset.json'
LOCK_FILE = 'lock'
CHECKPOINTS_DIR = 'checkpoints'
METRICS_FILE = 'metrics.jsonl'
RESULTS_FILE = 'results.json'
TEACHERS_FILE = 'teachers.json'
SWEEP_RUN_FILE = 'sweep_run.json'
FAILURE_FILE = 'failure.json'
LOG_FILE = 'log.txt'
IMPLEMENTATIONS_FILE = 'implementations.txt'

# Fields the configs gained after runs had been written without them, with the value that means
# what those runs did: an older run's config.json is read with them filled in, so that it can be
# evaluated, exported and resumed by the code of today.
ADDED_FIELDS = {
    'cosine_end': 0.0, 'body_learning_rate_scale': 1.0, 'eval_flip': False,
    'model.scale_stem': True, 'model.head_batch_norm': False, 'model.layer_scale_init': 0.0,
    'model.drop_path_rate': 0.0, 'model.norm': 'batch_norm', 'model.stem_bias': False,
    'model.head': 'pool', 'model.msfa_resolution': 16, 'model.msfa_expansion': 2.0,
    'folder_eval_fraction': 0.1, 'folder_skip_bad_files': False,
    'input.crop_fraction': 0.875, 'input.interpolation': 'bicubic',
    'input.train_interpolation': 'bicubic', 'input.eval_decode': 'full',
    'input.randaugment_layers': 0, 'input.randaugment_magnitude': 9.0,
    'input.randaugment_prob': 0.5, 'input.random_erasing_prob': 0.0,
    'input.random_erasing_area': (0.02, 1 / 3), 'input.mixup_alpha': 0.0,
    'input.cutmix_alpha': 0.0, 'input.mix_prob': 1.0, 'input.mix_switch_prob': 0.5,
    'distill.teachers': '', 'distill.alpha': 0.5, 'distill.temperature': 1.0,
    # Mixing pairs over the whole batch before (a resumed run is told of the change); how often
    # hosts agree to stop changes no result.
    'input.mix_group_size': 0, 'model.bn_group_size': 0, 'preemption_check_every_steps': 10,
}
# Fields the configs dropped, which older runs' config.json still hold: read without them.
# `input.shuffle_buffer` shuffled nothing once each host read its records by index (d6eee5a).
REMOVED_FIELDS = ('input.shuffle_buffer',)


def read_metrics(workdir: str) -> list[dict]:
  """The records of metrics.jsonl so far (a run still going has written some)."""
  path = join(workdir, METRICS_FILE)
  if not gfile().exists(path):
    return []
  with gfile().GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(workdir: str, last_step: int) -> None:
  """Drops records after `last_step`: a resumed run logs those steps again."""
  records = read_metrics(workdir)
  kept = [r for r in records if r['step'] <= last_step]
  if len(kept) != len(records):
    write_atomically(join(workdir, METRICS_FILE), ''.join(json.dumps(r) + '\n' for r in kept))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was started with; raises MissingRun when `workdir` holds no run."""
  path = join(workdir, CONFIG_FILE)
  if not gfile().exists(path):
    raise MissingRun(f'--workdir={workdir} holds no run ({path} is missing)')
  return ml_collections.ConfigDict(_in_todays_fields(read_json(path)))


def _in_todays_fields(saved: dict) -> dict:
  """A saved config with the fields added since filled in and the ones removed since dropped."""
  for dotted in (*ADDED_FIELDS, *REMOVED_FIELDS):
    *parents, name = dotted.split('.')
    section = saved
    for parent in parents:
      section = section.setdefault(parent, {})
    if dotted in ADDED_FIELDS:
      section.setdefault(name, ADDED_FIELDS[dotted])
    else:
      section.pop(name, None)
  return saved


def check_config(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Raises if `workdir` holds a run of another architecture; True if it holds a run at all.

  Runs resume when only the schedule, logging or data fields differ; any change that alters the
  parameters (table, width, classes) would make the checkpoint unusable, so it is refused before
  anything in the workdir is touched.
  """
  if not gfile().exists(join(workdir, CONFIG_FILE)):
    return False
  saved, model = read_config(workdir).model, config.model
  if (architecture.resolve(saved) != architecture.resolve(model)
      or saved.num_classes != model.num_classes):
    changed = [k for k in changed_fields(workdir, config) if k.startswith('model.')]
    raise ConfigError(f'--workdir={workdir} holds a run of another architecture (changed: '
                      f'{", ".join(changed)}); resume it with its own config or start a new '
                      'workdir')
  return True


def changed_fields(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """The dotted config fields whose values differ from the run's config.json."""
  def flat(tree: dict, prefix: str = '') -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
      if isinstance(value, dict):
        out.update(flat(value, f'{prefix}{key}.'))
      else:
        out[prefix + key] = value
    return out
  saved = flat(_plain(_in_todays_fields(read_json(join(workdir, CONFIG_FILE)))))
  now = flat(_plain(config.to_dict()))
  return sorted(k for k in now.keys() | saved.keys() if now.get(k) != saved.get(k))


def _plain(value: Any) -> Any:
  """JSON turns tuples into lists; compare configs in JSON's terms."""
  return json.loads(json.dumps(value))


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes config.json atomically (a rename): its presence is what says a run resumes."""
  gfile().makedirs(workdir)
  write_atomically(join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


def save_dataset(workdir: str, dataset: str, classes: list[str]) -> None:
  gfile().makedirs(workdir)
  write_json(join(workdir, DATASET_FILE), {'dataset': dataset, 'classes': list(classes)})


def read_classes(workdir: str) -> list[str] | None:
  """The class names of a run's dataset, label by label; None for a run written without them."""
  return read_json(join(workdir, DATASET_FILE)).get('classes')


def save_teachers(workdir: str, records: list[dict]) -> None:
  """Records a distilled run's teachers (`teachers.Teacher.record`); none: nothing written."""
  if records:
    write_json(join(workdir, TEACHERS_FILE), records)


def check_teachers(workdir: str, config: ml_collections.ConfigDict, records: list[dict]) -> None:
  """Raises ConfigError when the run in `workdir` learned from other teachers than those of
  `records` (compared by the checksums of their weights, in order: a teacher run that trained on
  since, or another file under the same name, is another teacher). A resume without teachers is
  allowed (it is then no longer distilled, and says so among the changed fields)."""
  path = join(workdir, TEACHERS_FILE)
  saved = read_json(path) or []
  if not records or [r['checksum'] for r in saved] == [r['checksum'] for r in records]:
    return
  named = lambda rs: ', '.join(f'{r["teacher"]}: {r["weights"]}, {r["checksum"][:8]}' for r in rs)
  before = f'other teachers ({named(saved)}, in {path})' if saved else 'no teachers'
  raise ConfigError(f'distill.teachers={config.distill.teachers!r} is not allowed for '
                    f'--workdir={workdir}: its run learned from {before}, these are '
                    f'{named(records)}; resume it with the teachers it learned from or start a '
                    'new workdir')


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock: one trainer per workdir. Evaluating beside it needs no lock.

  An advisory fcntl lock is released by the kernel when its holder exits, however it exits, so
  the lock of a killed trainer is never stale; the file stays, naming the last holder. An object
  store has no such lock: there a line says so, and nothing stops a second trainer.
  """
  if is_url(workdir):
    print(f'--workdir={workdir} is on a store without file locks: nothing stops a second '
          'trainer in it', flush=True)
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, LOCK_FILE), 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'unknown'
      raise WorkdirInUse(f'--workdir={workdir} is in use by process {holder}, which trains in '
                         'it; wait for it to end (or stop it), or give another workdir') from None
    f.seek(0)
    f.truncate()
    f.write(f'{os.getpid()}\n')
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def read_results(workdir: str) -> dict:
  return read_json(join(workdir, RESULTS_FILE))


def write_results(workdir: str, record: dict) -> None:
  write_json(join(workdir, RESULTS_FILE), record)


def append_implementations(workdir: str, lines: Iterable[str]) -> str:
  """Adds `lines` (the 'auto' choices of a step) to the run's record of them; returns its path."""
  path = join(workdir, IMPLEMENTATIONS_FILE)
  with gfile().GFile(path, 'a') as f:
    f.write(''.join(f'{line}\n' for line in lines))
  return path


def train_seconds_until(workdir: str, step: int) -> float:
  """The training time of a run's sessions up to `step`: the last time logged at or before it
  (each train log line carries the run's total), else that of results.json (a run logged before
  the lines carried it), else 0."""
  logged = [r['train_seconds'] for r in read_metrics(workdir)
            if 'train_seconds' in r and r['step'] <= step]
  return logged[-1] if logged else read_results(workdir).get('train_seconds', 0.0)


def results_record(workdir: str, config: ml_collections.ConfigDict, overrides, params: int,
                   madds: int, evals: list[tuple[int, dict]], meter) -> dict:
  """The results record: what ran, its size, speed, final and best top-1 and top-5, and the
  class names (from dataset.json).

  Best top-1 covers this run's evaluations and those before a resume (in metrics.jsonl);
  training time adds up over the sessions of a resumed run, stopped or killed ones included
  (`meter`, a `periodic.Meter`, started from what the log said); images/s is this session's.
  """
  history = [r for r in read_metrics(workdir) if 'eval_raw/top1' in r]
  final = evals[-1][1]
  previous = read_results(workdir)
  record = {
      'config': config.name, 'family': config.family, 'variants': list(config.variants),
      'overrides': list(overrides), 'dataset': config.dataset,
      'params': params, 'madds': madds, 'steps': evals[-1][0],
      'train_seconds': meter.train_seconds,
      'images_per_second': (meter.timed_steps * config.batch_size / meter.timed_seconds
                            if meter.timed_seconds else previous.get('images_per_second')),
  }
  for name in steps.VIEWS:
    if f'{name}/top1' not in final:
      continue  # the flip views, evaluated only with config.eval_flip
    prefix = '' if name == 'raw' else f'{name.removeprefix("raw_")}_'  # ema_, flip_, ema_flip_
    record[f'{prefix}top1'] = final[f'{name}/top1']
    record[f'{prefix}top5'] = final[f'{name}/top5']
    record[f'best_{prefix}top1'] = max(
        [r[f'eval_{name}/top1'] for r in history if f'eval_{name}/top1' in r]
        + [final[f'{name}/top1']])
  record['dead_channels'] = final['raw/dead_channels']
  record['ema_dead_channels'] = final['ema/dead_channels']
  record['classes'] = read_classes(workdir)
  return record


def state(workdir: str) -> str:
  """What a run's workdir shows: 'finished', 'failed', 'started' or 'pending'."""
  if gfile().exists(join(workdir, FAILURE_FILE)):
    return 'failed'
  if gfile().exists(join(workdir, RESULTS_FILE)):
    return 'finished'
  if any(gfile().exists(join(workdir, f)) for f in (SWEEP_RUN_FILE, CONFIG_FILE)):
    return 'started'
  return 'pending'
