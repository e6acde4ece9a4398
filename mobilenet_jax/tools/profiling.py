"""Where a train step's time goes: XLA's own per-op trace, summed by op class.

The step runs under `jax.profiler.trace`; XLA:CPU records one event per executed HLO
instruction (a thunk) on the thread that ran it. Each instruction is classed by what the
compiled HLO says about it: the module path and autodiff transform in its metadata
(`jvp(MobileNet)/ir_4/depthwise/conv/...` is a forward depthwise op,
`transpose(jvp(MobileNet))/...` its backward), its output shape and its fusion name. A fusion
counts under the op XLA names it by (its root): a batch-norm normalisation fused into the
activation after it counts as activation. Times are self times (a loop's body is counted once,
under its own ops) summed over threads: ops running at the same time on different threads both
count, so the classes' sum exceeds the step's wall time by the step's parallelism.
"""

import collections
import dataclasses
import glob
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable

import jax

from mobilenet_jax.tools import benchmarking

CLASSES = (
    'depthwise forward',
    'depthwise input gradient',
    'depthwise kernel gradient',
    'matmuls and convs forward',
    'matmuls and convs backward',
    'batch norm forward',
    'batch norm backward',
    'activations',
    'pads, copies, transposes',
    'optimizer, EMA and loss',
    'collectives across devices',
    'other',
)
_COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all')

# Fusion and instruction names XLA builds from the ops they hold: made of these words only, an
# instruction moves data and computes nothing.
_MOVING = {'copy', 'transpose', 'pad', 'slice', 'dynamic', 'update', 'concatenate', 'bitcast',
           'reshape', 'broadcast', 'reverse', 'fusion', 'wrapped', 'convert', 'gather', 'iota',
           'tuple', 'get', 'element'}
_DEPTHWISE = re.compile(r'/(\w*depthwise|\w+_down)/conv(/|$)')
_BATCH_NORM = re.compile(r'/(bn|norm)(/|$)')
_ACTIVATION = re.compile(r'jit\((relu6?|hard_\w+|silu|swish|gelu|sigmoid)\)')
_MATMUL = re.compile(r'(dot_general|conv_general_dilated|/conv/|/conv$|/dense|Dense_|classifier'
                     r'|/head|/expand/|/reduce/|/query|/key|/value|/output)')


@dataclasses.dataclass(frozen=True)
class Instruction:
  name: str
  opcode: str
  shape: tuple[int, ...]  # the output's (first element of a tuple: empty)
  op_name: str            # jax's name stack, from the metadata ('' if none)
  target: str = ''        # a custom call's target


def parse_hlo(text: str) -> dict[str, Instruction]:
  """Instruction name -> Instruction, for every instruction of an optimized HLO module's text."""
  instructions = {}
  for line in text.splitlines():
    match = re.match(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([\w\-]+)\(', line)
    if not match:
      continue
    name, type_, opcode = match.groups()
    dims = re.match(r'^[a-z]\w*\[([\d,]*)\]', type_)
    shape = tuple(int(d) for d in dims.group(1).split(',') if d) if dims else ()
    op_name = re.search(r'op_name="([^"]*)"', line)
    target = re.search(r'custom_call_target="([^"]*)"', line)
    instructions[name] = Instruction(name, opcode, shape, op_name.group(1) if op_name else '',
                                     target.group(1) if target else '')
  return instructions


def _moves_data(instruction: Instruction) -> bool:
  if instruction.opcode in ('copy', 'transpose', 'pad', 'slice', 'concatenate', 'reverse',
                            'dynamic-slice', 'dynamic-update-slice', 'broadcast', 'gather'):
    return True
  words = set(re.split(r'[_.\-\d]+', instruction.name)) - {''}
  return instruction.opcode == 'fusion' and words <= _MOVING and bool(words - {'fusion'})


def classify(instruction: Instruction, batch: int) -> str:
  """The class (one of CLASSES) of one instruction of a train step over `batch` images a device.

  A depthwise backward op is an input gradient when its output is shaped like a batch of
  activations (batch first), else a kernel gradient; the C++ kernels say so by their target.
  """
  op_name = instruction.op_name
  if instruction.opcode.startswith(_COLLECTIVES):
    return 'collectives across devices'  # their time includes waiting for the other devices
  if 'MobileNet' not in op_name:
    return 'optimizer, EMA and loss'
  backward = 'transpose(' in op_name
  if _moves_data(instruction):
    return 'pads, copies, transposes'
  if _DEPTHWISE.search(op_name) and not _BATCH_NORM.search(op_name):
    if not backward or instruction.target.endswith('forward'):
      return 'depthwise forward'
    shape = instruction.shape
    activation_shaped = len(shape) == 4 and shape[0] == batch
    if instruction.target:
      activation_shaped = instruction.target.endswith('input_grad')
    return 'depthwise input gradient' if activation_shaped else 'depthwise kernel gradient'
  if _BATCH_NORM.search(op_name):
    return 'batch norm backward' if backward else 'batch norm forward'
  if _ACTIVATION.search(op_name):
    return 'activations'
  if _MATMUL.search(op_name) or instruction.opcode in ('dot', 'convolution'):
    return 'matmuls and convs backward' if backward else 'matmuls and convs forward'
  return 'other'


def self_times(events: Iterable) -> dict[str, float]:
  """hlo_op name -> summed self time (ns) over the events of one thread, nesting removed."""
  ops = sorted((e for e in events if 'hlo_op' in dict(e.stats)),
               key=lambda e: (e.start_ns, -e.duration_ns))
  totals: dict[str, float] = collections.defaultdict(float)
  open_events: list = []  # enclosing events of the current one, innermost last
  for event in ops:
    while open_events and open_events[-1].end_ns <= event.start_ns:
      open_events.pop()
    name = dict(event.stats)['hlo_op']
    totals[name] += event.duration_ns
    if open_events:  # the enclosing op's own time excludes this one
      totals[dict(open_events[-1].stats)['hlo_op']] -= event.duration_ns
    open_events.append(event)
  return totals


def op_times(profile: 'jax.profiler.ProfileData', module: str) -> dict[str, float]:
  """hlo_op name -> seconds, summed over the threads of the host plane, for one HLO module."""
  totals: dict[str, float] = collections.defaultdict(float)
  for plane in profile.planes:
    for line in plane.lines:
      events = [e for e in line.events if dict(e.stats).get('hlo_module') == module]
      for name, ns in self_times(events).items():
        totals[name] += ns * 1e-9
  return totals


def trace(run: Callable[[], None], steps: int) -> 'jax.profiler.ProfileData':
  """The profile of `steps` calls of `run` (already compiled and warm)."""
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory):
      for _ in range(steps):
        run()
    path, = glob.glob(f'{directory}/**/*.xplane.pb', recursive=True)
    return jax.profiler.ProfileData.from_file(path)


def by_class(times: dict[str, float], instructions: dict[str, Instruction], batch: int,
             steps: int) -> tuple[dict[str, float], list[tuple[str, str, float]]]:
  """(class -> seconds per step, the instructions as (name, class, seconds per step), slowest
  first). An instruction missing from the HLO text counts as 'other'."""
  classes = dict.fromkeys(CLASSES, 0.0)
  rows = []
  for name, seconds in times.items():
    instruction = instructions.get(name)
    cls = classify(instruction, batch) if instruction else 'other'
    classes[cls] += seconds / steps
    rows.append((name, cls, seconds / steps))
  rows.sort(key=lambda row: -row[2])
  return classes, rows


def profile_train_step(config, batch: int, steps: int) -> dict:
  """The class split (ms per step, all devices) and slowest instructions of `steps` traced
  train steps over a global batch of `batch`."""
  config.batch_size = batch
  run, _, compiled = benchmarking.jax_step(config, 'train', batch)
  step_seconds = []
  for _ in range(5):  # the first steps after compiling run slower (memory first touched)
    start = time.perf_counter()
    run()
    step_seconds.append(time.perf_counter() - start)
  untraced = statistics.median(step_seconds[2:])
  data = trace(run, steps)
  hlo_text = compiled.as_text()
  instructions = parse_hlo(hlo_text)
  module = hlo_text.split('HloModule ', 1)[1].split(',', 1)[0].split()[0]
  # The compiled HLO is one device's program: its shapes hold the batch of one device.
  classes, rows = by_class(op_times(data, module), instructions, batch // jax.device_count(),
                           steps)
  return {'config': config.name, 'batch': batch, 'image_size': config.input.image_size,
          'untraced_step_ms': 1e3 * untraced,
          'op_ms_per_step': 1e3 * sum(classes.values()),
          'classes_ms': {name: 1e3 * s for name, s in classes.items()},
          'slowest': [{'op': name, 'class': cls, 'ms': 1e3 * s} for name, cls, s in rows]}
