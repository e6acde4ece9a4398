"""Timing train steps and inference of our models, and of the same models in PyTorch.

The JAX side runs the training loop's own jit-compiled step (optimizer, EMA, donated state) on
synthetic data; inference is the eval-mode forward pass. PyTorch (optional) runs the same
architecture (`torch_reference.create_model`: torchvision's, timm's for V4, or timm's for every
family), as a timm user runs it: channels-last, on the GPU where there is one, under autocast
to bfloat16 where ours computes in it, eager or `torch.compile`d; with as many threads, in rounds
alternating with ours so that both see the same machine load. Each step runs to completion
(`block_until_ready`, `torch.cuda.synchronize`) before its time is read.

Nothing here imports TensorFlow (the GPU machines' image has none): the model is checked as a
run checks it, less the data's checks, which need it and concern no synthetic batch.
"""

import functools
import os
import resource
import statistics
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import numpy as np

from mobilenet_jax import errors
from mobilenet_jax.interop import torch_reference
from mobilenet_jax.models import architecture, complexity, registry
from mobilenet_jax.train import optim, parallel

MODES = ('train', 'infer')


def _synthetic_batch(config, batch: int) -> dict:
  rng = np.random.default_rng(0)
  size = config.input.image_size
  return {'image': rng.standard_normal((batch, size, size, 3), np.float32),
          'label': rng.integers(0, config.model.num_classes, batch).astype(np.int32)}


def build_model(config) -> nn.Module:
  """The model of `config`, after the checks of a run's `setup.build_model` that concern the
  step (model, image size, batch, optimizer); raises ConfigError before anything compiles."""
  model = registry.create_model(config.model)
  architecture.check_image_size(model.architecture, config.input.image_size)
  parallel.check_batch(config)
  optim.validate(config)
  return model


def jax_step(config, mode: str, batch: int, teachers: tuple[str, ...] = ()
             ) -> tuple[Callable[[], None], dict, jax.stages.Compiled]:
  """A function running one step (blocking until done), compile time and memory figures, and
  the compiled step (its optimized HLO for a profile). A train step distills `teachers`
  (config files, `configs/FILE.py[:VARIANTS]`, with random weights: the cost is the same)."""
  model = build_model(config)
  frozen = ()
  if teachers:  # imported only here: the GPU benchmark's path stays free of orbax
    from mobilenet_jax.train import teachers as distill_teachers  # pylint: disable=g-import-not-at-top
    frozen = tuple(distill_teachers.random_teacher(spec, model.num_classes) for spec in teachers)
  compiled = parallel.compile_steps(model, config, steps_per_epoch=1000, num_steps=10**6,
                                    teachers=frozen)
  state = compiled.init()
  data = compiled.to_devices(_synthetic_batch(config, batch))
  if mode == 'train':
    step_fn, args = compiled.train_step, (state, data) + ((compiled.teachers,) if frozen else ())
  else:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    step_fn = jax.jit(lambda v, images: model.apply(v, images, train=False),
                      in_shardings=(compiled.replicated, compiled.sharded))
    args = (variables, data['image'])
  start = time.perf_counter()
  compiled = step_fn.lower(*args).compile()
  compile_seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  peak_mb = None
  if memory is not None:
    peak_mb = (memory.temp_size_in_bytes + memory.argument_size_in_bytes
               + memory.output_size_in_bytes - memory.alias_size_in_bytes) / 2**20

  if mode == 'train':
    holder = {'state': state}

    def run():
      holder['state'], metrics = compiled(holder['state'], *args[1:])  # the state is donated
      jax.block_until_ready((holder['state'], metrics))
  else:
    def run():
      compiled(*args).block_until_ready()
  return run, {'compile_seconds': compile_seconds, 'xla_peak_memory_mb': peak_mb}, compiled


def device_peak_memory_mb() -> float | None:
  """The most memory XLA has held on the first device in this process (None where the backend
  does not count it: CPUs)."""
  stats = jax.local_devices()[0].memory_stats()
  return stats['peak_bytes_in_use'] / 2**20 if stats and 'peak_bytes_in_use' in stats else None


def model_size(config) -> tuple[int, int]:
  """(parameters, multiply-adds) of the model of `config` at its image size."""
  return complexity.model_totals(build_model(config), config.input.image_size)


def torch_step(config, mode: str, batch: int, params: int, *, compiled: bool = False,
               timm: bool = False, backend: str = 'inductor') -> tuple[Callable[[], None], dict]:
  """A function running one PyTorch step to completion, and what it ran on. The model is
  `torch_reference.create_model`'s (`timm`: timm's for every family), `torch.compile`d by
  `backend` with `compiled`; on the GPU where torch sees one, with cuDNN's autotuning on (as
  timm's train.py). On CPUs with as many threads as this process may use (XLA's count too)."""
  import torch  # pylint: disable=g-import-not-at-top
  threads = len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  if device.type == 'cuda':
    torch.backends.cudnn.benchmark = True
  model = torch_reference.create_model(config, params, timm=timm).to(
      device, memory_format=torch.channels_last)
  name = f'{type(model).__module__.split(".")[0]}.{type(model).__name__}'
  data = _synthetic_batch(config, batch)
  images = torch.from_numpy(data['image']).permute(0, 3, 1, 2).to(
      device, memory_format=torch.channels_last)
  labels = torch.from_numpy(data['label']).long().to(device)
  # Our policy's twin: bfloat16 compute where `model.dtype` asks for it, on this device.
  autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16,
                               enabled=config.model.dtype == 'bfloat16')
  synchronize = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
  info = {'torch_threads': threads, 'torch_version': torch.__version__, 'torch_model': name,
          'torch_device': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                           else 'cpu')}
  if mode == 'train':
    model.train()
    optimizer = {
        'rmsprop': lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=config.rmsprop_decay,
                                                 eps=config.epsilon, momentum=config.momentum),
        'sgd': lambda p: torch.optim.SGD(p, lr=1e-3, momentum=config.momentum, nesterov=True),
        'adamw': lambda p: torch.optim.AdamW(p, lr=1e-3),
    }[config.optimizer](model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    # The model alone, as timm's train.py compiles it (the loss and the optimizer stay eager).
    forward = torch.compile(model, backend=backend) if compiled else model

    def run():
      optimizer.zero_grad(set_to_none=True)
      with autocast():
        loss = loss_fn(forward(images), labels)
      loss.backward()
      optimizer.step()
      synchronize()
  else:
    model.eval()
    forward = torch.compile(model, backend=backend) if compiled else model

    def run():
      with torch.inference_mode(), autocast():
        forward(images)
      synchronize()
  return run, info


def torch_peak_memory_mb() -> float | None:
  """The most memory PyTorch's allocator has held on the GPU since the last reset (None on CPUs)."""
  import torch  # pylint: disable=g-import-not-at-top
  return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _reset_torch_peak_memory() -> None:
  import torch  # pylint: disable=g-import-not-at-top
  if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()


# Processes of one cell whose ratios to PyTorch differ by more than this share disagree: on
# these machines some processes run a whole step ~1.6x slower (both implementations of the
# depthwise layers alike, PyTorch less), and a median of three may then land on the slow side.
DISAGREEMENT = 0.2


def processes_disagree(ratios: list[float]) -> bool:
  """Whether the processes of one cell measured ratios too far apart to trust their median."""
  return len(ratios) > 1 and max(ratios) > (1 + DISAGREEMENT) * min(ratios)


def _timings(seconds: list[float], batch: int) -> dict:
  median = statistics.median(seconds)
  return {'step_ms': {'median': 1e3 * median, 'min': 1e3 * min(seconds),
                      'max': 1e3 * max(seconds)},
          'images_per_second': batch / median}


# Result keys' prefixes: ours, PyTorch eager, PyTorch `torch.compile`d.
RUNS = {'': 'ours', 'torch_': 'PyTorch', 'torch_compiled_': 'PyTorch compiled'}


def benchmark(config, mode: str, batch: int, steps: int, rounds: int, compare_torch: bool, *,
              ours: bool = True, torch_compile: bool = False, timm: bool = False,
              warmup: int = 1, compile_backend: str = 'inductor',
              teachers: tuple[str, ...] = ()) -> dict:
  """Timed steps of ours (and PyTorch's), `rounds` rounds of `steps`, after `warmup` each.

  Each run's figures carry its prefix in RUNS ('step_ms', 'torch_step_ms', ...): images/s,
  step times, compile seconds (for PyTorch its first step's: cuDNN's autotuning,
  `torch.compile`'s compilation) and peak device memory, read after the warm-up (None on CPUs;
  ours: 'peak_memory_by_step' False when the steps held no more than compiling had, 'auto''s
  measurements of large layers included, so that the figure only bounds the step's).
  `ours=False` times PyTorch alone; `torch_compile` adds the model `torch.compile`d by
  `compile_backend` (inductor: what users run; the tests trace with aot_eager, which compiles
  no code). A train step with `teachers` (config files) distills them.
  """
  if teachers and (mode != 'train' or compare_torch or torch_compile or not ours):
    raise errors.ConfigError('--teacher times a train step of ours: give --mode=train, without '
                             '--compare_torch or --torch_compile')
  config.batch_size = batch
  params, madds = model_size(config)
  makers = {}
  if ours:
    makers[''] = lambda: jax_step(config, mode, batch, teachers)[:2]
  if compare_torch:
    makers['torch_'] = lambda: torch_step(config, mode, batch, params, timm=timm)
  if torch_compile:
    makers['torch_compiled_'] = lambda: torch_step(config, mode, batch, params, compiled=True,
                                                   timm=timm, backend=compile_backend)
  if not makers:
    raise errors.ConfigError('nothing to time: ours is off and PyTorch is not compared')
  errors.check_int('warmup', warmup, minimum=1)
  runs, result = {}, {}
  for prefix, make in makers.items():  # built and warmed up one after the other
    if prefix:
      _reset_torch_peak_memory()
    run, info = make()  # ours: its compile time; PyTorch's: what it runs on
    before = None if prefix else device_peak_memory_mb()  # 'auto''s measurements included
    start = time.perf_counter()
    run()
    if prefix:
      result[prefix + 'compile_seconds'] = time.perf_counter() - start
    for _ in range(warmup - 1):
      run()
    result[prefix + 'peak_memory_mb'] = (torch_peak_memory_mb() if prefix
                                         else device_peak_memory_mb())
    if before is not None:  # XLA's peak cannot be reset: whether the steps set it, or only
      result['peak_memory_by_step'] = result['peak_memory_mb'] > before  # bound it
    result.update(info)
    runs[prefix] = run
  seconds = {prefix: [] for prefix in runs}
  for _ in range(rounds):
    for prefix, run in runs.items():
      for _ in range(steps):
        start = time.perf_counter()
        run()
        seconds[prefix].append(time.perf_counter() - start)
  result.update({'config': config.name, 'mode': mode, 'batch': batch,
                 'image_size': config.input.image_size, 'params': params, 'madds': madds,
                 'dtype': config.model.dtype})
  if teachers:
    result['teachers'] = list(teachers)
  if ours:
    result.update({'backend': jax.default_backend(), 'devices': jax.device_count(),
                   'device_kind': jax.devices()[0].device_kind})
  for prefix, times in seconds.items():
    result.update({prefix + k: v for k, v in _timings(times, batch).items()})
  for prefix in ('torch_', 'torch_compiled_'):
    if ours and prefix in runs:
      result[f'ratio_vs_{prefix[:-1]}'] = (result['images_per_second']
                                           / result[prefix + 'images_per_second'])
  # Linux reports kilobytes: the whole process, PyTorch included when compared.
  result['process_peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return result
