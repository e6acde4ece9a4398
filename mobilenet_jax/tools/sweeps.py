"""Running a sweep: one training run per override dict, each in its own workdir, resumable.

Every run is the training entry point in a subprocess (`python -m experiments.train ...`), so a
run that fails or is killed cannot take the others with it, and the same command, printed by
--dry_run, runs anywhere. Beside what training writes, a run's workdir holds the sweep's own
files (`train/workdir.py` names them all): the command that runs it (a run whose command changed
is run again), the exit code and last log line of a failure, and its console output. The
sweep's folder holds `sweep.json`, every run's name, overrides and command.
"""

import dataclasses
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

from mobilenet_jax.errors import ConfigError
from mobilenet_jax.tools import lifetime
from mobilenet_jax.train import workdir as run_dir

TRAINER = 'experiments.train'
SWEEP_FILE = 'sweep.json'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  config: str                   # config file argument, 'configs/v3_small.py:fashion_mnist'
  overrides: dict[str, Any]     # this run's fields
  shared_args: tuple[str, ...]  # --config.FIELD=VALUE flags given to the whole sweep
  workdir: str

  def command(self, trainer: str = TRAINER) -> list[str]:
    return ['python', '-m', trainer, f'--config={self.config}', f'--workdir={self.workdir}',
            *self.shared_args,
            *(f'--config.{k}={_format_value(v)}' for k, v in self.overrides.items()
              if k != 'config')]


def load_sweep(spec: str) -> list[dict[str, Any]]:
  """The override dicts of a sweep file, 'path/to/sweep.py[:arg]' (its `get_sweep(arg)`)."""
  path, _, arg = spec.partition(':')
  if not os.path.exists(path):
    raise ConfigError(f'--sweep={spec} is not allowed; no file {path}')
  module_spec = importlib.util.spec_from_file_location('sweep_file', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  overrides = module.get_sweep(arg or None)
  if not overrides:
    raise ConfigError(f'--sweep={spec} defines no runs')
  return overrides


def expand(config: str, overrides: Sequence[dict[str, Any]], shared_args: Sequence[str],
           workdir: str) -> list[Run]:
  """One Run per override dict, each named by its values and given `workdir/<name>`."""
  swept = [k for k in dict.fromkeys(k for o in overrides for k in o)]
  for arg in shared_args:
    field = arg.removeprefix('--config.').split('=')[0]
    if field in swept:
      raise ConfigError(f'{arg} is not allowed: the sweep varies {field}')
  names = [run_name(o, swept) for o in overrides]
  runs, seen = [], {}
  for name, o in zip(names, overrides):
    if names.count(name) > 1:  # same values twice (e.g. repeats): number them
      seen[name] = seen.get(name, 0) + 1
      name = f'{name},{seen[name]}'
    runs.append(Run(name, o.get('config', config), dict(o), tuple(shared_args),
                    os.path.join(os.path.abspath(workdir), name)))
  return runs


def run_name(overrides: dict[str, Any], swept: Sequence[str]) -> str:
  """'width_multiplier=0.5', 'v2,width_multiplier=0.5': short field names where unambiguous."""
  short = {k: k.split('.')[-1] for k in swept}
  parts = []
  for key, value in overrides.items():
    if key == 'config':
      parts.append(os.path.splitext(os.path.basename(value.split(':')[0]))[0])
      continue
    label = short[key] if list(short.values()).count(short[key]) == 1 else key
    parts.append(f'{label}={_format_value(value)}')
  return re.sub(r'[^A-Za-z0-9._=,+-]', '_', ','.join(parts)) or 'base'


def _format_value(value: Any) -> str:
  return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def status(run: Run, trainer: str = TRAINER) -> str:
  """'finished', 'failed', 'interrupted' (to resume, or to rerun with a changed command) or
  'pending'."""
  state = run_dir.state(run.workdir)
  recorded = run_dir.read_json(os.path.join(run.workdir, run_dir.SWEEP_RUN_FILE)).get('command')
  if state == 'started' or (state != 'pending' and recorded != run.command(trainer)):
    return 'interrupted'
  return state


def _cpu_sets(parallel: int) -> list[list[int]]:
  """The CPUs of each of `parallel` slots: the machine's CPUs dealt out in turn."""
  cpus = sorted(os.sched_getaffinity(0))
  if parallel >= len(cpus):
    return [[cpus[i % len(cpus)]] for i in range(parallel)]
  return [cpus[i::parallel] for i in range(parallel)]


def execute(run: Run, cpus: Sequence[int] | None = None, trainer: str = TRAINER) -> dict:
  """Runs (or resumes) one run to its end; returns {'status', 'seconds', 'error'}."""
  os.makedirs(run.workdir, exist_ok=True)
  command = run.command(trainer)
  failure_path = os.path.join(run.workdir, run_dir.FAILURE_FILE)
  if os.path.exists(failure_path):
    os.remove(failure_path)
  run_dir.write_json(os.path.join(run.workdir, run_dir.SWEEP_RUN_FILE),
                     {'name': run.name, 'overrides': run.overrides, 'command': command})
  # XLA and tf.data size their thread pools from the CPU affinity mask. (taskset rather than a
  # preexec_fn: forking this multithreaded process to run Python in the child can deadlock.)
  pin = ['taskset', '-c', ','.join(map(str, cpus))] if cpus else []
  start = time.time()
  log_path = os.path.join(run.workdir, run_dir.LOG_FILE)
  with open(log_path, 'a') as log:
    # The run dies with this process (tools/lifetime.py), so a killed sweep leaves none behind.
    code = subprocess.call([*pin, sys.executable, *command[1:]], cwd=REPO_ROOT, stdout=log,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           env={**os.environ, 'PYTHONUNBUFFERED': '1',
                                lifetime.PARENT_PID: str(os.getpid())})
  seconds = time.time() - start
  if code == 0:
    return {'status': 'finished', 'seconds': seconds, 'error': None}
  error = _last_line(log_path) or f'exit code {code}'
  run_dir.write_json(failure_path, {'returncode': code, 'error': error})
  return {'status': 'failed', 'seconds': seconds, 'error': error}


def _last_line(path: str) -> str:
  """What a failed run said last: its one-line error, or a traceback's exception line."""
  with open(path, errors='replace') as f:
    lines = [line.strip() for line in f if line.strip()]
  said = [line for line in lines
          if re.match(r'(error: |stopped by |[\w.]+(Error|Exception|Interrupt)\b)', line)]
  return (said or lines or [''])[-1]


def run_all(runs: Sequence[Run], parallel: int = 1, trainer: str = TRAINER,
            retry_failed: bool = True, report: Callable[[str], None] = print) -> dict[str, str]:
  """Runs every run not yet finished, `parallel` at a time; returns each run's final status."""
  outcome = {run.name: status(run, trainer) for run in runs}
  todo = [run for run in runs if outcome[run.name] not in
          ('finished', *(() if retry_failed else ('failed',)))]
  for run in runs:
    if run not in todo:
      report(f'{run.name}: {outcome[run.name]}, skipped')
  slots = _cpu_sets(parallel) if parallel > 1 else [None]
  free = list(range(len(slots)))
  lock = threading.Lock()

  def work(run: Run) -> None:
    with lock:
      slot = free.pop()
    was = outcome[run.name]
    report(f'{run.name}: {"resuming" if was == "interrupted" else "starting"}')
    try:
      result = execute(run, slots[slot], trainer)
    finally:
      with lock:
        free.append(slot)
    outcome[run.name] = result['status']
    minutes, seconds = divmod(int(result['seconds']), 60)
    message = f'{run.name}: {result["status"]} after {minutes}m{seconds:02d}s'
    report(message + (f' ({result["error"]})' if result['error'] else ''))

  with futures.ThreadPoolExecutor(max_workers=len(slots)) as pool:
    for future in [pool.submit(work, run) for run in todo]:
      future.result()
  return outcome


def write_manifest(workdir: str, runs: Sequence[Run], trainer: str = TRAINER) -> None:
  """DIR/sweep.json: every run's name, overrides and command, for the report and for humans."""
  os.makedirs(workdir, exist_ok=True)
  run_dir.write_json(os.path.join(workdir, SWEEP_FILE),
                     [{'name': r.name, 'overrides': r.overrides, 'command': r.command(trainer)}
                      for r in runs])


def shell_command(run: Run, trainer: str = TRAINER) -> str:
  """A self-contained command line (run from the repository root)."""
  return shlex.join(run.command(trainer))
