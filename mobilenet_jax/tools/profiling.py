"""Where a step's time goes: XLA's own per-op trace, summed by op class, and PyTorch's beside it.

The step runs under `jax.profiler.trace`; XLA:CPU records one event per executed HLO
instruction (a thunk) on the thread that ran it. Each instruction is classed by what the
compiled HLO says about it: the module path and autodiff transform in its metadata
(`jvp(MobileNet)/ir_4/depthwise/conv/...` is a forward depthwise op,
`transpose(jvp(MobileNet))/...` its backward), its output shape and its fusion name. A fusion
counts under the op XLA names it by (its root): a batch-norm normalisation fused into the
activation after it counts as activation. Times are self times (a loop's body is counted once,
under its own ops) summed over threads: ops running at the same time on different threads both
count, so the classes' sum exceeds the step's wall time by the step's parallelism.

PyTorch's profiler records one event per aten op and autograd node on the thread that ran it
(oneDNN's threads inside an op are not events), so its self times sum to about its step. The
same model in PyTorch (the benchmark's) is classed into the same classes, the depthwise
gradients as one ('depthwise backward': oneDNN computes both in one call). To put the two side
by side, each class is given as its share of its framework's op time times that framework's
untraced step: milliseconds of the step, comparable across the two.
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


def _untraced_ms(run: Callable[[], None]) -> float:
  seconds = []
  for _ in range(5):  # the first steps after compiling run slower (memory first touched)
    start = time.perf_counter()
    run()
    seconds.append(time.perf_counter() - start)
  return 1e3 * statistics.median(seconds[2:])


def profile_step(config, mode: str, batch: int, steps: int) -> dict:
  """The class split (ms per step, all devices) and slowest instructions of `steps` traced
  train steps or inference passes (`mode`) over a global batch of `batch`."""
  config.batch_size = batch
  run, _, compiled = benchmarking.jax_step(config, mode, batch)
  untraced_ms = _untraced_ms(run)
  data = trace(run, steps)
  hlo_text = compiled.as_text()
  instructions = parse_hlo(hlo_text)
  module = hlo_text.split('HloModule ', 1)[1].split(',', 1)[0].split()[0]
  # The compiled HLO is one device's program: its shapes hold the batch of one device.
  classes, rows = by_class(op_times(data, module), instructions, batch // jax.device_count(),
                           steps)
  return {'config': config.name, 'mode': mode, 'batch': batch,
          'image_size': config.input.image_size, 'untraced_step_ms': untraced_ms,
          'op_ms_per_step': 1e3 * sum(classes.values()),
          'classes_ms': {name: 1e3 * s for name, s in classes.items()},
          'slowest': [{'op': name, 'class': cls, 'ms': 1e3 * s} for name, cls, s in rows]}


# PyTorch's side. Op and autograd-node names, matched against the event that holds the time
# and the events enclosing it, innermost first.
_TORCH_CONVOLUTIONS = ('aten::convolution_backward', 'aten::mkldnn_convolution',
                       'aten::_convolution', 'aten::convolution', 'aten::conv2d')
_TORCH_BACKWARD = 'autograd::engine::evaluate_function: '
_TORCH_KINDS = (  # (pattern on the op or node name, class), first match wins
    (re.compile(r'batch_norm|BatchNorm'), 'batch norm'),
    (re.compile(r'relu|hardtanh|hardswish|hardsigmoid|sigmoid|silu|gelu|threshold', re.I),
     'activations'),
    (re.compile(r'cross_entropy|log_softmax|nll_loss|LogSoftmax|NllLoss|AccumulateGrad'),
     'optimizer, EMA and loss'),
    (re.compile(r'linear|addmm|::mm$|matmul|^Addmm|^Mm'), 'matmuls and convs'),
    (re.compile(r'copy|contiguous|clone|permute|transpose|view|reshape|cat|pad|expand', re.I),
     'pads, copies, transposes'),
)
COMPARED_CLASSES = tuple(name for name in CLASSES if name not in (
    'depthwise input gradient', 'depthwise kernel gradient', 'collectives across devices')
                         ) + ('depthwise backward',)


def classify_torch(chain: list) -> str:
  """The class of the time held by `chain[0]`, a PyTorch profiler event; `chain` is it and the
  events enclosing it, innermost first."""
  names = [event.name for event in chain]
  if any(name.startswith('Optimizer.') for name in names):
    return 'optimizer, EMA and loss'
  nodes = [name[len(_TORCH_BACKWARD):] for name in names if name.startswith(_TORCH_BACKWARD)]
  backward = bool(nodes)
  for event in chain:
    if event.name in _TORCH_CONVOLUTIONS and event.input_shapes:
      weight = event.input_shapes[2 if event.name == 'aten::convolution_backward' else 1]
      if len(weight) == 4 and weight[1] == 1 and weight[2] > 1:  # (out, in / groups, kh, kw)
        return 'depthwise backward' if backward else 'depthwise forward'
      return 'matmuls and convs backward' if backward else 'matmuls and convs forward'
  # What the time is part of: the autograd node, else the outermost aten op.
  ops = [name for name in names if name.startswith('aten::')]
  key = nodes[0] if nodes else (ops[-1] if ops else names[-1])
  for pattern, kind in _TORCH_KINDS:
    if pattern.search(key):
      if kind in ('batch norm', 'matmuls and convs'):
        return f"{kind} {'backward' if backward else 'forward'}"
      return kind
  return 'other'


def profile_torch_step(config, mode: str, batch: int, steps: int) -> dict:
  """PyTorch's side of `profile_step`: the benchmark's PyTorch model and step, its profiler's
  self times summed by class (COMPARED_CLASSES)."""
  import torch  # pylint: disable=g-import-not-at-top
  config.batch_size = batch
  params, _ = benchmarking.model_size(config)
  run, _ = benchmarking.torch_step(config, mode, batch, params)
  untraced_ms = _untraced_ms(run)
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                              record_shapes=True) as profile:
    for _ in range(steps):
      run()
  classes = dict.fromkeys(COMPARED_CLASSES, 0.0)
  for event in profile.events():
    if event.self_cpu_time_total <= 0:
      continue
    chain, parent = [event], event.cpu_parent
    while parent is not None:
      chain.append(parent)
      parent = parent.cpu_parent
    classes[classify_torch(chain)] += event.self_cpu_time_total * 1e-3 / steps
  return {'config': config.name, 'mode': mode, 'batch': batch,
          'image_size': config.input.image_size, 'untraced_step_ms': untraced_ms,
          'op_ms_per_step': sum(classes.values()), 'classes_ms': classes}


def in_step_ms(result: dict) -> dict[str, float]:
  """A profile's classes (COMPARED_CLASSES) as milliseconds of its untraced step: each class's
  share of the op time times the step."""
  classes = dict(result['classes_ms'])
  if 'depthwise input gradient' in classes:  # ours: the two gradients as one, as PyTorch's
    classes['depthwise backward'] = (classes.pop('depthwise input gradient')
                                     + classes.pop('depthwise kernel gradient'))
    classes['other'] += classes.pop('collectives across devices')
  scale = result['untraced_step_ms'] / result['op_ms_per_step']
  return {name: classes[name] * scale for name in COMPARED_CLASSES}
