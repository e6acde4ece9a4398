"""Timing train steps and inference of our models, and of the same models in PyTorch.

The JAX side runs the training loop's own jit-compiled step (optimizer, EMA, donated state) on
synthetic data; inference is the eval-mode forward pass. PyTorch (optional) runs the same
architecture (`torch_reference.create_model`: torchvision's, timm's for V4), channels-last, with
as many threads, in rounds alternating with ours so that both see the same machine load.
"""

import os
import resource
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop import torch_reference
from mobilenet_jax.models import complexity
from mobilenet_jax.train import parallel, setup

MODES = ('train', 'infer')


def _synthetic_batch(config, batch: int) -> dict:
  rng = np.random.default_rng(0)
  size = config.input.image_size
  return {'image': rng.standard_normal((batch, size, size, 3), np.float32),
          'label': rng.integers(0, config.model.num_classes, batch).astype(np.int32)}


def jax_step(config, mode: str, batch: int, teachers: tuple[str, ...] = ()
             ) -> tuple[Callable[[], None], dict, jax.stages.Compiled]:
  """A function running one step (blocking until done), compile time and memory figures, and
  the compiled step (its optimized HLO for a profile). A train step distills `teachers`
  (config files, `configs/FILE.py[:VARIANTS]`, with random weights: the cost is the same)."""
  model = setup.build_model(config)
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
      metrics['loss'].block_until_ready()
  else:
    def run():
      compiled(*args).block_until_ready()
  return run, {'compile_seconds': compile_seconds, 'xla_peak_memory_mb': peak_mb}, compiled


def model_size(config) -> tuple[int, int]:
  """(parameters, multiply-adds) of the model of `config` at its image size."""
  return complexity.model_totals(setup.build_model(config), config.input.image_size)


def torch_step(config, mode: str, batch: int, params: int) -> tuple[Callable[[], None], dict]:
  import torch  # pylint: disable=g-import-not-at-top
  threads = os.cpu_count() or 1
  torch.set_num_threads(threads)
  model = torch_reference.create_model(config, params).to(memory_format=torch.channels_last)
  data = _synthetic_batch(config, batch)
  images = torch.from_numpy(data['image']).permute(0, 3, 1, 2).contiguous(
      memory_format=torch.channels_last)
  labels = torch.from_numpy(data['label']).long()
  if mode == 'train':
    model.train()
    optimizer = {
        'rmsprop': lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=config.rmsprop_decay,
                                                 eps=config.epsilon, momentum=config.momentum),
        'sgd': lambda p: torch.optim.SGD(p, lr=1e-3, momentum=config.momentum, nesterov=True),
        'adamw': lambda p: torch.optim.AdamW(p, lr=1e-3),
    }[config.optimizer](model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def run():
      optimizer.zero_grad(set_to_none=True)
      loss_fn(model(images), labels).backward()
      optimizer.step()
  else:
    model.eval()

    def run():
      with torch.inference_mode():
        model(images)
  return run, {'torch_threads': threads, 'torch_version': torch.__version__}


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


def benchmark(config, mode: str, batch: int, steps: int, rounds: int,
              compare_torch: bool, teachers: tuple[str, ...] = ()) -> dict:
  """Timed steps of ours (and PyTorch's), `rounds` rounds of `steps`, after one warm-up each;
  a train step with `teachers` (config files) distills them."""
  if teachers and (mode != 'train' or compare_torch):
    raise ConfigError('--teacher times a train step of ours: give --mode=train, without '
                      '--compare_torch')
  config.batch_size = batch
  params, madds = model_size(config)
  runners = {'jax': jax_step(config, mode, batch, teachers)[:2]}
  if compare_torch:
    runners['torch'] = torch_step(config, mode, batch, params)
  seconds = {name: [] for name in runners}
  for run, _ in runners.values():
    run()
  for _ in range(rounds):
    for name, (run, _) in runners.items():
      for _ in range(steps):
        start = time.perf_counter()
        run()
        seconds[name].append(time.perf_counter() - start)
  result = {'config': config.name, 'mode': mode, 'batch': batch,
            'image_size': config.input.image_size, 'params': params, 'madds': madds,
            'backend': jax.default_backend(), 'devices': jax.device_count(),
            **runners['jax'][1], **_timings(seconds['jax'], batch)}
  if teachers:
    result['teachers'] = list(teachers)
  if compare_torch:
    theirs = _timings(seconds['torch'], batch)
    result.update(runners['torch'][1])
    result['torch_step_ms'] = theirs['step_ms']
    result['torch_images_per_second'] = theirs['images_per_second']
    result['ratio_vs_torch'] = result['images_per_second'] / theirs['images_per_second']
  # Linux reports kilobytes: the whole process, PyTorch included when compared.
  result['process_peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return result
