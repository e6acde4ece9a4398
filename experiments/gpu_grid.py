r"""The GPU grid: ours against timm's models, train and inference, in one prepared run.

  python -m experiments.gpu_grid --out=$OUT            # on one GPU, within --deadline seconds
  python -m experiments.gpu_grid --smoke --out=/tmp/g  # the same path at 32 px, batch 2 (CPU)

Cells: V2, V3-Large, V4 Conv-S and V4 Hybrid-M at 224 px, train at batch 256 and inference at
batch 1024. Ours runs in bfloat16 (`model.dtype`) with 'auto' measuring its implementations
(into a cache under --out, empty at the start); timm's model of the same architecture (parameter
counts checked equal) runs as a timm user runs it: channels-last, under `torch.autocast` to
bfloat16, the same optimizer and batch, eager and `torch.compile`d. Each run: warm-up steps, then
--steps timed ones, each synchronized; images/s, step time, compile time (PyTorch: its first
step) and peak device memory. Order: timm eager in every cell, then ours (train cells first),
then timm compiled in as many cells as the time left allows; a run expected to end after the
deadline is skipped, and the table says so. The environment (versions, GPU) is printed first.

Writes gpu_grid.json, gpu_grid.md and gpu_grid.log (every process's output) into --out, and
'auto''s choices as auto/implementations.json. Imports neither TensorFlow nor TFDS, orbax or clu:
it runs in the GPU machine's own image (ml_collections aside: docs/gpu.md).
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import datetime  # pylint: disable=g-import-not-at-top,wrong-import-position
import gc  # pylint: disable=g-import-not-at-top,wrong-import-position
import importlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import importlib.metadata  # pylint: disable=g-import-not-at-top,wrong-import-position
import importlib.util  # pylint: disable=g-import-not-at-top,wrong-import-position
import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import os  # pylint: disable=g-import-not-at-top,wrong-import-position
import platform  # pylint: disable=g-import-not-at-top,wrong-import-position
import shutil  # pylint: disable=g-import-not-at-top,wrong-import-position
import signal  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position
import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position
import time  # pylint: disable=g-import-not-at-top,wrong-import-position
import traceback  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax import errors  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.tools import benchmark_grid as grid  # pylint: disable=g-import-not-at-top,wrong-import-position

_OUT = flags.DEFINE_string('out', None, 'Folder for the results (default: $OUT).')
_CELLS = flags.DEFINE_list('cells', list(grid.FAMILIES),
                           "Cells as family:mode, or a family for both modes.")
_KINDS = flags.DEFINE_list('kinds', list(grid.KINDS),
                           'Runs: torch (timm eager), ours, torch_compiled (timm compiled).')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Image size, px.')
_TRAIN_BATCH = flags.DEFINE_integer('train_batch', 256, 'Batch of the train cells.')
_INFER_BATCH = flags.DEFINE_integer('infer_batch', 1024, 'Batch of the inference cells.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps a run.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps a run first (compiling included).')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', ['bfloat16', 'float32'],
                           'Our model.dtype; PyTorch autocasts to bfloat16 with it.')
_DEADLINE = flags.DEFINE_float('deadline', 480, 'Seconds for the whole grid; what would end '
                               'later is skipped.')
_COMPILE_BACKEND = flags.DEFINE_string('compile_backend', 'inductor',
                                       "torch.compile's backend (aot_eager: no code generated)")
_SMOKE = flags.DEFINE_bool('smoke', False, 'Tiny sizes, the same path: 32 px, batch 2, 2 timed '
                           'steps after 1 warm-up (a CPU checks the script).')
# A process of the grid runs one job: the grid starts itself with these.
_WORKER = flags.DEFINE_enum('worker', None, list(grid.KINDS), 'Internal: run one job.')
_RESULTS = flags.DEFINE_string('results', None, 'Internal: where a job appends its results.')
_STOP_AT = flags.DEFINE_float('stop_at', None, 'Internal: the deadline, seconds since the epoch.')

OUT_FILES = ('gpu_grid.json', 'gpu_grid.md', 'gpu_grid.log')
# Modules the grid needs where it runs, by import name, and the distributions whose versions it
# reports (the jax-cuda plugins are found by name).
REQUIRED = ('jax', 'flax', 'optax', 'numpy', 'ml_collections', 'absl', 'torch', 'torchvision',
            'timm')
VERSIONS = ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'ml_collections', 'torch', 'torchvision',
            'timm', 'triton')
GRACE_SECONDS = 15  # a job still running this long after the deadline is stopped


def _settings() -> dict:
  if _SMOKE.value:
    return {'image_size': 32, 'train_batch': 2, 'infer_batch': 2, 'steps': 2, 'warmup': 1,
            'dtype': _DTYPE.value, 'compile_backend': _COMPILE_BACKEND.value}
  return {'image_size': _IMAGE_SIZE.value, 'train_batch': _TRAIN_BATCH.value,
          'infer_batch': _INFER_BATCH.value, 'steps': _STEPS.value, 'warmup': _WARMUP.value,
          'dtype': _DTYPE.value, 'compile_backend': _COMPILE_BACKEND.value}


def _batch(settings: dict, mode: str) -> int:
  return settings['train_batch'] if mode == 'train' else settings['infer_batch']


def _config(cell: grid.Cell, settings: dict):
  config = importlib.import_module(f'configs.{cell.family}').get_config()
  config.input.image_size = settings['image_size']
  config.model.dtype = settings['dtype']
  return config


# --- a job: one process ---------------------------------------------------------------------

def _release_torch(kind: str) -> None:
  """Frees what the last cell's PyTorch model held, so that the next one's peak is its own."""
  if kind == 'ours':
    return
  import torch  # pylint: disable=g-import-not-at-top
  gc.collect()
  if kind == 'torch_compiled':
    torch._dynamo.reset()  # pylint: disable=protected-access
  if torch.cuda.is_available():
    torch.cuda.empty_cache()


def _work(kind: str, cells: tuple[grid.Cell, ...], settings: dict, results: str,
          stop_at: float) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from mobilenet_jax.tools import benchmarking  # pylint: disable=g-import-not-at-top
  # Compile time is one of the figures (as experiments.benchmark).
  jax.config.update('jax_enable_compilation_cache', False)
  seen = {}
  for cell in cells:
    record = {'cell': cell.name, 'kind': kind}
    why = grid.fits(kind, cell.mode, stop_at - time.time(), seen)
    if why:
      record['run'] = {'skipped': why}
    else:
      start = time.time()
      print(f'=== {kind} {cell.name}', flush=True)
      try:
        result = benchmarking.benchmark(
            _config(cell, settings), cell.mode, _batch(settings, cell.mode), settings['steps'],
            rounds=1, compare_torch=kind == 'torch', ours=kind == 'ours',
            torch_compile=kind == 'torch_compiled', timm=True, warmup=settings['warmup'],
            compile_backend=settings['compile_backend'])
        record['run'] = grid.run_figures(result, kind)
        record.update(params=result['params'], madds=result['madds'])
      except Exception as e:  # pylint: disable=broad-except
        traceback.print_exc()  # into the log; the table gets one line
        line = next((l for l in str(e).splitlines() if l.strip()), '')
        record['run'] = {'failed': f'{type(e).__name__}: {line}'[:300]}
      record['run']['seconds'] = time.time() - start
      seen[(kind, cell.mode)] = max(seen.get((kind, cell.mode), 0), record['run']['seconds'])
      _release_torch(kind)
    with open(results, 'a') as f:
      f.write(json.dumps(record) + '\n')


# --- the grid: the process that starts the jobs ----------------------------------------------

def _version(name: str) -> str:
  for dist in (name, name.replace('_', '-')):
    try:
      return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      pass
  return 'missing'


def _gpu() -> str:
  if not shutil.which('nvidia-smi'):
    return 'none found (no nvidia-smi)'
  done = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version',
                         '--format=csv,noheader'], capture_output=True, text=True, check=False)
  return '; '.join(done.stdout.strip().splitlines()) or f'nvidia-smi: {done.stderr.strip()}'


def _code() -> str:
  if not shutil.which('git'):
    return 'unknown (no git here)'
  done = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                        check=False, cwd=os.path.dirname(os.path.abspath(__file__)))
  return done.stdout.strip() or 'unknown (no git here)'


def environment() -> dict:
  """What the grid runs on: the date, the code, Python, the packages' versions and the GPU."""
  plugins = sorted(f"{d.metadata['Name']} {d.version}" for d in importlib.metadata.distributions()
                   if (d.metadata['Name'] or '').lower().replace('_', '-').startswith('jax-cuda'))
  return {'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
          'code': _code(), 'python': f'{platform.python_version()} ({sys.executable})',
          'packages': {name: _version(name) for name in VERSIONS}, 'jax_plugins': plugins,
          'gpu': _gpu(), 'cpus': len(os.sched_getaffinity(0))}


def _describe_environment(env: dict) -> list[str]:
  return [f"gpu_grid at {env['date']}, code {env['code']}",
          f"python {env['python']}, {env['cpus']} CPUs",
          ', '.join(f'{k} {v}' for k, v in env['packages'].items())
          + (', ' + ', '.join(env['jax_plugins']) if env['jax_plugins'] else ''),
          f"GPU: {env['gpu']}"]


def _check(cells: tuple[grid.Cell, ...], kinds: list[str]) -> None:
  """One line for a bad cell or kind, or a package the grid cannot run without."""
  for cell in cells:
    if importlib.util.find_spec(f'configs.{cell.family}') is None:
      raise errors.ConfigError(f'--cells: no config configs/{cell.family}.py; the grid\'s '
                               f"families: {', '.join(grid.FAMILIES)}")
    errors.check_choice('--cells mode', cell.mode, grid.MODES)
  for kind in kinds:
    errors.check_choice('--kinds', kind, grid.KINDS)
  missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
  if missing:
    raise errors.UserError(f"{', '.join(missing)} not installed here; carry the wheels "
                           '(docs/gpu.md says how)')


def _progress(start: float, cell: dict, kind: str, run: dict) -> str:
  what = f"[{time.time() - start:4.0f} s] {cell['family']} {cell['mode']}, {grid.KIND_NAMES[kind]}"
  for why in ('skipped', 'failed', 'cut'):
    if why in run:
      return f'{what}: {run[why]}'
  peak = run.get('peak_memory_mb')
  return (f"{what}: {run['images_per_second']:.0f} img/s, step {run['step_ms']['median']:.1f} "
          f"ms, compile {run['compile_seconds']:.1f} s"
          + (f', peak {peak:.0f} MiB' if peak is not None else ''))


def _spawn(job: grid.Job, settings: dict, stop_at: float, log) -> dict[str, dict]:
  """Runs `job` in its own process (its output into `log`) until it ends or the deadline has
  passed; each cell's record, the cells it did not reach marked as cut or failed."""
  with tempfile.TemporaryDirectory() as tmp:
    results = os.path.join(tmp, 'results.jsonl')
    command = [sys.executable, '-m', 'experiments.gpu_grid', f'--worker={job.kind}',
               '--cells=' + ','.join(c.name for c in job.cells), f'--results={results}',
               f'--stop_at={stop_at}', *(f'--{k}={v}' for k, v in settings.items())]
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if job.kind != 'ours':  # JAX only counts parameters there: on the CPU, measuring nothing
      env.update(JAX_PLATFORMS='cpu', MOBILENET_JAX_AUTOTUNE='off')
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    try:
      status = process.wait(timeout=max(stop_at - time.time(), 0) + GRACE_SECONDS)
      stopped = False
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      status, stopped = process.wait(), True
    records = {}
    if os.path.exists(results):
      with open(results) as f:
        records = {r['cell']: r for r in map(json.loads, f)}
  for cell in job.cells:
    if cell.name not in records:
      run = ({'cut': 'stopped at the deadline'} if stopped else
             {'failed': f'its process ended with status {status}; see gpu_grid.log'})
      records[cell.name] = {'cell': cell.name, 'kind': job.kind, 'run': run}
  return records


def _write(out: str, env: dict, settings: dict, cells: list[dict], elapsed: float) -> None:
  with open(os.path.join(out, 'gpu_grid.json'), 'w') as f:
    json.dump({'environment': env, 'settings': settings, 'elapsed_seconds': elapsed,
               'cells': cells}, f, indent=1)
  header = [f"# GPU grid: ours (JAX, {settings['dtype']}, 'auto') against timm (PyTorch, "
            f"channels-last{', autocast bfloat16' if settings['dtype'] == 'bfloat16' else ''})",
            '', *(f'{line}  ' for line in _describe_environment(env)),
            f"{settings['image_size']} px, train batch {settings['train_batch']}, inference batch "
            f"{settings['infer_batch']}, {settings['warmup']} warm-up + {settings['steps']} timed "
            f'steps a run; {elapsed:.0f} s in all.']
  with open(os.path.join(out, 'gpu_grid.md'), 'w') as f:
    f.write(grid.markdown(cells, header))


def _run_grid() -> None:
  out = _OUT.value or os.environ.get('OUT')
  if not out:
    raise errors.ConfigError('--out: give a folder for the results (or set $OUT)')
  cells = grid.parse_cells(_CELLS.value)
  _check(cells, _KINDS.value)
  errors.check_positive('--deadline', _DEADLINE.value)
  settings = _settings()
  os.makedirs(out, exist_ok=True)
  # 'auto' measures from an empty cache, unless one is given: its choices come back with --out.
  os.environ.setdefault('MOBILENET_JAX_CACHE_DIR', os.path.join(out, 'auto'))
  start = time.time()
  stop_at = start + _DEADLINE.value
  env = environment()
  table = {cell.name: {'family': cell.family, 'mode': cell.mode,
                       'batch': _batch(settings, cell.mode),
                       'image_size': settings['image_size'], 'runs': {}} for cell in cells}
  seen = {}
  with open(os.path.join(out, 'gpu_grid.log'), 'a') as log:
    def say(line: str) -> None:
      print(line, flush=True)
      log.write(line + '\n')
      log.flush()

    for line in _describe_environment(env):
      say(line)
    say(f'settings: {json.dumps(settings)}, deadline {_DEADLINE.value:.0f} s')
    for job in grid.plan(cells, _KINDS.value):
      job_start = time.time()
      why = grid.fits(job.kind, job.cells[0].mode, stop_at - job_start, seen)
      if job.kind == 'ours' and why:  # timm's jobs decide cell by cell
        records = {job.cells[0].name: {'run': {'skipped': why}}}
      else:
        records = _spawn(job, settings, stop_at, log)
      for name, record in records.items():
        cell = table[name]
        cell['runs'][job.kind] = record['run']
        cell.setdefault('params', record.get('params'))
        say(_progress(start, cell, job.kind, record['run']))
        seconds = (time.time() - job_start if job.kind == 'ours'
                   else record['run'].get('seconds'))
        if seconds is not None and 'skipped' not in record['run']:
          key = (job.kind, cell['mode'])
          seen[key] = max(seen.get(key, 0), seconds)
      _write(out, env, settings, list(table.values()), time.time() - start)
  print(grid.markdown(list(table.values()), []), flush=True)
  left = [(name, kind) for name, cell in table.items() for kind, run in cell['runs'].items()
          if 'skipped' in run or 'cut' in run]
  if left:
    print('To run what was left: python -m experiments.gpu_grid --cells='
          + ','.join(sorted({name for name, _ in left})) + ' --kinds='
          + ','.join(k for k in grid.KINDS if k in {kind for _, kind in left}) + ' --out=...',
          flush=True)
  print(f"Wrote {', '.join(OUT_FILES)} into {out}", flush=True)


def main(argv):
  del argv
  if _WORKER.value:
    _work(_WORKER.value, grid.parse_cells(_CELLS.value), _settings(), _RESULTS.value,
          _STOP_AT.value)
  else:
    _run_grid()


if __name__ == '__main__':
  cli.run(main)
