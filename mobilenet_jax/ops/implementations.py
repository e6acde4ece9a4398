"""Choosing among equivalent implementations of an op: by name, or for 'auto' by measurement.

'auto' times every candidate on the shapes of the layer being traced (forward and backward
where the layer is trained, the forward pass alone for inference; a few runs each, taking
turns, the fastest run counted) the first time those shapes meet a backend, and keeps
the winner in a cache file keyed by backend, device kind, op, shapes and library versions, so
later runs and other processes on the machine read it instead of measuring. A GPU thus gets
whatever is fastest there without anyone having timed it in advance. Each choice is printed once
a process, or, inside `collecting()` (the training loop), kept for a one-line summary.

What is measured is what one device runs: the traced shapes divided by the devices that share
the batch (the 'data' axis of the mesh in context while the step is traced; the train and eval
steps are traced inside theirs), from inputs drawn on the device. A measurement whose buffers
would take more than a share of the device's memory is not made: 'auto' takes the table then,
and says so.

When several processes share a run (several hosts), process 0 alone measures (or reads its
cache) and sends its choice to the others, so that every process compiles the same program. The
measurement is skipped, for the table of fastest-by-backend, when it is turned off
(MOBILENET_JAX_AUTOTUNE=off: the tests, for speed and fixed programs). Naming an implementation
in the config forces it and needs neither.
"""

import concurrent.futures
import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from mobilenet_jax import errors
from mobilenet_jax.ops import choices
from mobilenet_jax.ops.choices import Choice

CACHE_FILE = 'implementations.json'
_ROUNDS = 5               # timed runs of each candidate after its compile; the fastest counts
_SECONDS_PER_CANDIDATE = 2.0  # fewer rounds where one run is long
_NAME_BYTES = 64          # an implementation's name, as process 0 sends it to the others
# At most this share of a device's memory for one measurement's buffers (the inputs, output and
# gradients of each candidate, and its temporaries, estimated as as much again): the step being
# traced has not allocated its own yet, but the train state and other processes' may be there.
_MEMORY_SHARE = 0.25
BATCH_AXIS = 'data'       # the mesh axis the batch is sharded over (train.parallel's)

_lock = threading.Lock()
_decided: dict[str, str] = {}  # key -> implementation, this process
_collected: list['Choice'] | None = None  # inside `collecting()`: the choices, not printed


def summary(chosen: Sequence[Choice]) -> str:
  """One line for `chosen` (`choices.summary`), naming this machine's cache file."""
  return choices.summary(chosen, os.path.join(cache_dir(), CACHE_FILE))


@contextlib.contextmanager
def collecting() -> Iterator[list[Choice]]:
  """Inside, choices are appended to the yielded list instead of printed: a run's first step
  would otherwise open with a line per layer shape (27 for V4 Conv-S). The caller summarises."""
  global _collected
  outer, _collected = _collected, []
  try:
    yield _collected
  finally:
    _collected = outer


def resolve(field: str, name: str, implementations: Iterable[str],
            fastest_on_backend: Mapping[str, str], default: str) -> str:
  """`name` itself, or for 'auto' the fastest known for the current backend (no measurement)."""
  errors.check_choice(field, name, ('auto', *implementations))
  if name == 'auto':
    return fastest_on_backend.get(jax.default_backend(), default)
  return name


def measuring() -> bool:
  return os.environ.get('MOBILENET_JAX_AUTOTUNE', 'on') != 'off'


def trained(module: nn.Module) -> bool:
  """Whether `module` is being applied in a train step, i.e. differentiated: the step that
  updates the batch-norm statistics (every MobileNet has them) is the one that trains. Only the
  choice of implementation depends on it, never the result."""
  return module.is_mutable_collection('batch_stats')


def choose(field: str, name: str, candidates: Mapping[str, Callable[..., jax.Array]],
           fastest_on_backend: Mapping[str, str], default: str, *, op: str,
           inputs: Sequence[jax.ShapeDtypeStruct], measure: bool = True,
           version: str = '', differentiated: bool = True) -> str:
  """`name`, or for 'auto' the candidate measured fastest on `inputs`' shapes.

  candidates: implementation name -> function of the inputs (the op's other arguments bound),
  each differentiable in all of them. measure=False takes the table (for parameter init, which
  runs once on a one-image batch whose shapes no step has). version: what the candidates' own
  code is, beyond the library versions in the key (the C++ kernels' source), so that a changed
  candidate is measured again rather than read from the cache. differentiated: whether the
  program differentiates the layer (a train step), so the backward pass is timed too; inference
  times the forward pass alone, a separate choice. With several processes, every
  process must call this for the same ops in the same order (they trace the same model).
  """
  static = resolve(field, name, candidates, fastest_on_backend, default)
  if name != 'auto' or not measure or not measuring() or len(candidates) == 1:
    return static
  device = jax.devices()[0]
  inputs = per_device(inputs)
  shapes = ' '.join('x'.join(map(str, i.shape)) + f':{jnp.dtype(i.dtype).name}' for i in inputs)
  key = (f'{device.platform}|{device.device_kind}|{op} {shapes}|jax {jax.__version__}|'
         + ','.join(sorted(candidates)) + (f'|{version}' if version else '')
         + ('' if differentiated else '|forward only'))
  with _lock:
    if key in _decided:
      return _decided[key]
    choice = how = None
    start = time.perf_counter()
    if jax.process_index() == 0:
      too_big = _over_memory_share(device, candidates, inputs, differentiated)
      if too_big:
        choice, how = static, f'the table: {too_big}'
      else:
        choice, how = _cached_or_measured(key, candidates, inputs, differentiated)
    seconds = time.perf_counter() - start if how and how.startswith('measured') else 0.0
    if jax.process_count() > 1:
      # In another thread, as the measurement: the calling thread is tracing.
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        choice = pool.submit(_process_0s, choice).result()
      how = how or "process 0's choice"
      if choice not in candidates:
        raise errors.ConfigError(
            f'{field}=auto: process 0 chose {choice!r} for {op}, which this process cannot run '
            f'(it has {", ".join(sorted(candidates))}); build the same kernels on every host '
            'or name an implementation')
    _decided[key] = choice
  chosen = Choice(field, f'{op} {shapes}', choice, how, seconds, differentiated)
  if _collected is None:
    print(chosen, flush=True)
  else:
    _collected.append(chosen)
  return choice


def per_device(inputs: Sequence[jax.ShapeDtypeStruct]) -> list[jax.ShapeDtypeStruct]:
  """`inputs` as one device holds them: the first (the activations) with its batch divided by
  the size of the mesh's BATCH_AXIS in context, where it divides (the others are weights)."""
  mesh = jax.sharding.get_abstract_mesh()
  shards = 1 if mesh.empty else dict(mesh.shape).get(BATCH_AXIS, 1)
  first, *rest = inputs
  if shards == 1 or not first.shape or first.shape[0] % shards:
    return list(inputs)
  return [jax.ShapeDtypeStruct((first.shape[0] // shards, *first.shape[1:]), first.dtype), *rest]


def _over_memory_share(device, candidates: Mapping[str, Callable],
                       inputs: Sequence[jax.ShapeDtypeStruct], differentiated: bool) -> str:
  """Why measuring on `inputs` would not fit in _MEMORY_SHARE of `device`'s memory, or ''."""
  stats = device.memory_stats() or {}
  limit = stats.get('bytes_limit')
  if not limit:  # CPUs: the host's memory
    limit = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  out = jax.eval_shape(next(iter(candidates.values())), *inputs)
  size = sum(i.size * jnp.dtype(i.dtype).itemsize for i in inputs)
  size += out.size * jnp.dtype(out.dtype).itemsize
  if differentiated:
    size *= 2  # the cotangent and the inputs' gradients
  needed = 2 * size  # temporaries, as much again
  if needed <= _MEMORY_SHARE * limit:
    return ''
  return (f'measuring would take ~{needed / 2**30:.1f} GiB, over {_MEMORY_SHARE:.0%} of the '
          f"device's {limit / 2**30:.1f} GiB")


def _cached_or_measured(key: str, candidates: Mapping[str, Callable],
                        inputs: Sequence[jax.ShapeDtypeStruct],
                        differentiated: bool = True) -> tuple[str, str]:
  """The choice for `key` and how it was made: from the cache file, else measured (and kept)."""
  path = os.path.join(cache_dir(), CACHE_FILE)
  known = _read_cache(path).get(key)
  if known and known.get('choice') in candidates:
    return known['choice'], 'cached in ' + path
  # Measured in another thread: the calling thread is tracing, and JAX's trace is per thread.
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    seconds = pool.submit(_measure_all, candidates, inputs, differentiated).result()
  choice = min(seconds, key=seconds.get)
  _write_cache(path, key, {'choice': choice, 'seconds': seconds})
  return choice, 'measured: ' + ', '.join(
      f'{n} {1e3 * s:.2f} ms' for n, s in sorted(seconds.items(), key=lambda item: item[1]))


def _process_0s(choice: str | None) -> str:
  """Process 0's `choice`, on every process (a collective: each process calls it in turn)."""
  data = np.zeros(_NAME_BYTES, np.uint8)
  if choice is not None:
    encoded = np.frombuffer(choice.encode(), np.uint8)
    data[:len(encoded)] = encoded
  received = np.asarray(multihost_utils.broadcast_one_to_all(data))
  return bytes(received).rstrip(b'\0').decode()


def cache_dir() -> str:
  default = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                         'mobilenet_jax')
  return os.environ.get('MOBILENET_JAX_CACHE_DIR', default)


def _measure_all(candidates: Mapping[str, Callable], inputs: Sequence[jax.ShapeDtypeStruct],
                 differentiated: bool = True) -> dict[str, float]:
  """Each candidate's fastest run. The candidates take turns, one run each a round, so that a
  slow spell of a noisy machine (seen here: seconds at a time) falls on all of them rather than
  on whichever was being timed (timed one after another, 5 runs each, the main job's costliest
  layer went to `matmul` in one process and `im2col` in two, the convolution within 5%)."""
  # Drawn on the device: at a GPU's batches one layer's input is gigabytes, which numpy draws on
  # the host at 10-100 ns an element (the inputs of V2's layers at batch 1024: 5G elements).
  keys = jax.random.split(jax.random.key(0), len(inputs) + 1)
  arrays = [_normal(key, i.shape, i.dtype) for key, i in zip(keys, inputs)]
  out = jax.eval_shape(next(iter(candidates.values())), *inputs)
  cotangent = _normal(keys[-1], out.shape, out.dtype) if differentiated else jnp.zeros(())
  runs = {name: _runner(fn, arrays, cotangent, differentiated)
          for name, fn in candidates.items()}
  times = {name: [] for name in runs}
  deadline = time.perf_counter() + _SECONDS_PER_CANDIDATE * len(runs)
  for round_ in range(_ROUNDS):
    if round_ and time.perf_counter() > deadline:
      break
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: min(seconds) for name, seconds in times.items()}


_normal = jax.jit(jax.random.normal, static_argnums=(1, 2))


def _runner(fn: Callable, arrays: list[jax.Array], cotangent: jax.Array,
            differentiated: bool = True) -> Callable[[], None]:
  """A function that runs, once and to completion, the forward pass and (differentiated) the
  gradients of all inputs, jitted; compiled before it is returned."""
  def forward_backward(cotangent, *arrays):
    out, backward = jax.vjp(fn, *arrays)
    return out, backward(cotangent)  # the output too, so that the forward pass is not dropped

  def forward(cotangent, *arrays):
    del cotangent
    return fn(*arrays)

  step = jax.jit(forward_backward if differentiated else forward)
  args = [jax.device_put(a) for a in (cotangent, *arrays)]
  jax.block_until_ready(step(*args))  # compile
  return lambda: jax.block_until_ready(step(*args))


def _read_cache(path: str) -> dict:
  """The cache's entries; an unreadable or corrupt file counts as empty (and is rewritten)."""
  try:
    with open(path) as f:
      entries = json.load(f)
    return entries if isinstance(entries, dict) else {}
  except (OSError, ValueError):
    return {}


def _write_cache(path: str, key: str, entry: dict) -> None:
  """Adds `entry` by writing a new file and renaming it over the old one, so that a reader never
  sees half a file; a cache that cannot be written costs a measurement next time, nothing else."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    entries = _read_cache(path)
    entries[key] = entry
    with tempfile.NamedTemporaryFile('w', dir=os.path.dirname(path), suffix='.tmp',
                                     delete=False) as f:
      json.dump(entries, f, indent=1, sort_keys=True)
    os.replace(f.name, path)
  except OSError as error:
    print(f'warning: could not write the implementation cache {path}: {error}', flush=True)
