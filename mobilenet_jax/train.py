"""Training: state, pure train and eval steps, and the loop that owns all I/O.

The step is `jax.jit`-compiled over a one-axis device mesh: batches are sharded over 'data', the
state is replicated. Batch-norm statistics are therefore means over the global batch and the
gradients are global means, on one CPU, eight simulated devices, a GPU or a TPU slice alike.
"""

import functools
import json
import math
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mobilenet_jax import (architecture, checkpointing, complexity, config_errors, datasets,
                           input_pipeline, metrics_io, optim, pretrained)
from mobilenet_jax.registry import create_model

PREPROCESSING = ('imagenet', 'small')


class TrainState(train_state.TrainState):
  batch_stats: Any
  ema_params: Any


def validate_config(config: ml_collections.ConfigDict) -> nn.Module:
  """Checks every field a run uses and builds the model; raises ConfigError before any work."""
  datasets.check_known(config.dataset)
  pretrained.configure(config)
  model = create_model(config.model)
  architecture.check_image_size(model.architecture, config.input.image_size)
  config_errors.check_choice('input.preprocessing', config.input.preprocessing, PREPROCESSING)
  config_errors.check_int('batch_size', config.batch_size, minimum=1)
  devices = jax.device_count()
  if config.batch_size % devices:
    raise config_errors.ConfigError(
        f'batch_size={config.batch_size} is not allowed; it must be divisible by the '
        f'{devices} devices')
  if config.num_train_steps <= 0:
    config_errors.check_positive('num_epochs', config.num_epochs)
  for field in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
                'keep_checkpoints'):
    config_errors.check_int(field, config[field], minimum=1)
  optim.validate(config)
  return model


def create_train_state(model: nn.Module, config, tx: optax.GradientTransformation) -> TrainState:
  size = config.input.image_size
  variables = model.init(jax.random.key(config.seed), jnp.zeros((1, size, size, 3)))
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           batch_stats=variables['batch_stats'],
                           ema_params=variables['params'])


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """TensorFlow's EMA with num_updates: the average warms up as (1 + n) / (10 + n)."""
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def train_step(state: TrainState, batch: dict, *, config, num_classes: int,
               schedule: optax.Schedule) -> tuple[TrainState, dict]:
  dropout_key = jax.random.fold_in(jax.random.key(config.seed + 1), state.step)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        mutable=['batch_stats'], rngs={'dropout': dropout_key})
    targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], num_classes),
                                  config.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, (logits, updates['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  if config.ema_decay > 0:
    decay = ema_decay_at(state.step, config.ema_decay)
    new_state = new_state.replace(ema_params=optax.incremental_update(
        new_state.params, state.ema_params, step_size=1.0 - decay))
  else:
    new_state = new_state.replace(ema_params=new_state.params)
  metrics = {'loss': loss,
             'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
             'learning_rate': schedule(state.step)}
  return new_state, metrics


def eval_step(state: TrainState, batch: dict) -> dict:
  """Sums over the batch for raw and EMA weights; padding examples (mask 0) count for nothing."""
  mask = batch['mask'].astype(jnp.float32)
  sums = {'count': mask.sum()}
  for name, params in (('raw', state.params), ('ema', state.ema_params)):
    logits = state.apply_fn({'params': params, 'batch_stats': state.batch_stats},
                            batch['image'], train=False)
    top5 = jax.lax.top_k(logits, 5)[1]
    labels = batch['label']
    sums[f'{name}/top1'] = ((top5[:, 0] == labels) * mask).sum()
    sums[f'{name}/top5'] = (jnp.any(top5 == labels[:, None], axis=-1) * mask).sum()
    sums[f'{name}/loss'] = (optax.softmax_cross_entropy_with_integer_labels(logits, labels)
                            * mask).sum()
  return sums


class Runner:
  """The jit-compiled steps over a device mesh, and the moves of host data onto it."""

  def __init__(self, model, config, spec: input_pipeline.InputSpec, num_steps: int,
               devices=None):
    self.mesh = Mesh(np.asarray(jax.devices() if devices is None else devices), ('data',))
    self.replicated = NamedSharding(self.mesh, P())
    self.sharded = NamedSharding(self.mesh, P('data'))
    self.schedule = optim.learning_rate_schedule(config, spec.steps_per_epoch, num_steps)
    tx = optim.create_optimizer(config, self.schedule)
    init = functools.partial(create_train_state, model, config, tx)
    self.abstract_state = jax.eval_shape(init)
    state_sharding = jax.tree.map(lambda _: self.replicated, self.abstract_state)
    self.abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        self.abstract_state, state_sharding)
    self.init = jax.jit(init, out_shardings=state_sharding)
    self.train_step = jax.jit(
        functools.partial(train_step, config=config, num_classes=model.num_classes,
                          schedule=self.schedule),
        in_shardings=(state_sharding, self.sharded), out_shardings=(state_sharding, None),
        donate_argnums=0)
    self.eval_step = jax.jit(eval_step, in_shardings=(state_sharding, self.sharded))

  def initial_state(self, model, config) -> TrainState:
    """A fresh state: the model's init, or the weights of `config.init_from`."""
    state = self.init()
    if not config.init_from:
      return state
    variables = pretrained.load(config, model, {'params': state.params,
                                                'batch_stats': state.batch_stats})
    variables = jax.device_put(variables, self.replicated)
    return state.replace(params=variables['params'], batch_stats=variables['batch_stats'],
                         ema_params=variables['params'])

  def to_devices(self, batch: dict) -> dict:
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.sharded, x), batch)

  def evaluate(self, state: TrainState, batches) -> dict:
    sums = None
    for batch in batches:
      out = self.eval_step(state, self.to_devices(batch))
      sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    sums = jax.device_get(sums)
    count = max(float(sums.pop('count')), 1.0)
    return {k: float(v) / count for k, v in sums.items()}


def _num_steps(config, spec: input_pipeline.InputSpec) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return max(int(math.ceil(config.num_epochs * spec.steps_per_epoch)), 1)


def _format_eta(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


def _prepare(config: ml_collections.ConfigDict, workdir: str | None):
  """Everything checked before any compilation: config, workdir and data. Writes nothing."""
  model = validate_config(config)
  resuming = workdir is not None and checkpointing.check_workdir(workdir, config)
  builder = datasets.load_builder(config)
  spec = input_pipeline.describe(builder, config, datasets.split_size)
  if spec.num_classes != model.num_classes:
    raise config_errors.ConfigError(
        f'model.num_classes={model.num_classes} is not allowed; {config.dataset} has '
        f'{spec.num_classes} classes')
  return model, resuming, builder, spec


def restore_latest_run(config: ml_collections.ConfigDict, workdir: str):
  """(model, builder, spec, runner, state) of `workdir`'s latest checkpoint; state is None when
  the run has none."""
  model, resuming, builder, spec = _prepare(config, workdir)
  runner = Runner(model, config, spec, _num_steps(config, spec))
  manager = checkpointing.create_manager(workdir, config.keep_checkpoints, asynchronous=False)
  state = checkpointing.restore_latest(manager, runner.abstract_state) if resuming else None
  manager.close()
  return model, builder, spec, runner, state


def evaluate_latest(config: ml_collections.ConfigDict, workdir: str) -> tuple[int, dict]:
  """(step, metrics) of the latest checkpoint in `workdir` on `config.eval_split`."""
  _, builder, spec, runner, state = restore_latest_run(config, workdir)
  if state is None:
    raise FileNotFoundError(f'no checkpoint to evaluate in {workdir}')
  return int(state.step), runner.evaluate(state, input_pipeline.eval_batches(builder, config, spec))


def evaluate_imported(config: ml_collections.ConfigDict) -> dict:
  """Metrics of the weights of `config.init_from` on `config.eval_split`."""
  if not config.init_from:
    raise config_errors.ConfigError('init_from is empty; name the weights to evaluate')
  model, _, builder, spec = _prepare(config, None)
  runner = Runner(model, config, spec, _num_steps(config, spec))
  state = runner.initial_state(model, config)
  return runner.evaluate(state, input_pipeline.eval_batches(builder, config, spec))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overrides: tuple[str, ...] = ()) -> dict:
  """Trains (or resumes) in `workdir` and returns the final results record."""
  model, resuming, builder, spec = _prepare(config, workdir)
  num_steps = _num_steps(config, spec)
  if not resuming and jax.process_index() == 0:
    checkpointing.save_config(workdir, config)

  runner = Runner(model, config, spec, num_steps)
  manager = checkpointing.create_manager(workdir, config.keep_checkpoints,
                                         config.async_checkpoints)
  state = checkpointing.restore_latest(manager, runner.abstract_state)
  start_step = 0 if state is None else int(state.step)
  if state is None:
    state = runner.initial_state(model, config)
  else:
    print(f'Resuming from the checkpoint of step {start_step} in {workdir}.', flush=True)
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  if jax.process_index() == 0:
    metrics_io.truncate_jsonl(metrics_path, start_step)
  writer = metrics_io.create_writer(workdir)
  params, madds = complexity.totals(complexity.layer_costs(model, config.input.image_size))
  print(f'{config.name}: {params:,} params, {madds / 1e6:.1f}M MAdds; {num_steps} steps of '
        f'{config.batch_size} images ({spec.steps_per_epoch} an epoch) on {jax.device_count()} '
        'devices', flush=True)

  def run_eval(step: int, state: TrainState) -> dict:
    result = runner.evaluate(state, input_pipeline.eval_batches(builder, config, spec))
    writer.write_scalars(step, {f'eval_{k}': v for k, v in result.items()})
    print(f'eval at step {step}: top-1 {result["raw/top1"]:.4f} (EMA {result["ema/top1"]:.4f}), '
          f'top-5 {result["raw/top5"]:.4f} (EMA {result["ema/top5"]:.4f})', flush=True)
    return result

  def check_finite(step: int, loss: float) -> None:
    if not np.isfinite(loss):
      raise FloatingPointError(f'the loss is not finite at step {step}; stopped, keeping the last '
                               f'good checkpoint (step {manager.latest_step()}) in {workdir}')

  def save_checkpoint(step: int, state: TrainState, last_loss: jax.Array) -> None:
    check_finite(step, float(last_loss))
    checkpointing.save(manager, step, state)

  batches = input_pipeline.train_batches(builder, config, spec, start_step)
  train_metrics, input_wait = [], 0.0
  timed_steps, timed_seconds = 0, 0.0
  log_start = time.perf_counter()
  evals = []
  step = start_step
  while step < num_steps:
    wait_start = time.perf_counter()
    batch = runner.to_devices(next(batches))
    input_wait += time.perf_counter() - wait_start
    state, metrics = runner.train_step(state, batch)
    train_metrics.append(metrics)
    step += 1

    if step % config.log_every_steps == 0 or step == num_steps:
      summary = {k: float(np.mean([m[k] for m in jax.device_get(train_metrics)]))
                 for k in train_metrics[0]}
      check_finite(step, summary['loss'])
      elapsed = time.perf_counter() - log_start
      summary['images_per_second'] = len(train_metrics) * config.batch_size / elapsed
      summary['input_wait_fraction'] = input_wait / elapsed
      if step - len(train_metrics) > start_step:  # the first interval includes compilation
        timed_steps += len(train_metrics)
        timed_seconds += elapsed
      writer.write_scalars(step, {f'train_{k}': v for k, v in summary.items()})
      eta = (num_steps - step) * elapsed / len(train_metrics)
      print(f'step {step}/{num_steps}  loss {summary["loss"]:.4f}  acc {summary["accuracy"]:.4f}'
            f'  lr {summary["learning_rate"]:.3g}  {summary["images_per_second"]:.0f} img/s'
            f'  input wait {summary["input_wait_fraction"]:.0%}  ETA {_format_eta(eta)}',
            flush=True)
      train_metrics, input_wait, log_start = [], 0.0, time.perf_counter()

    if step % config.checkpoint_every_steps == 0 or step == num_steps:
      save_checkpoint(step, state, metrics['loss'])
    if step % config.eval_every_steps == 0 or step == num_steps:
      evals.append((step, run_eval(step, state)))
      log_start = time.perf_counter()  # evaluation time is not training time
  manager.wait_until_finished()
  writer.flush()

  if not evals:  # the run had already finished: evaluate what it left
    evals.append((step, run_eval(step, state)))
  results = _results(config, overrides, params, madds, evals, workdir, timed_steps,
                     timed_seconds)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=2)
  manager.close()
  writer.close()
  return results


def _results(config, overrides, params, madds, evals, workdir, timed_steps,
             timed_seconds) -> dict:
  """Final and best eval figures over this run's evaluations and earlier ones in metrics.jsonl."""
  history = [r for r in metrics_io.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
             if 'eval_raw/top1' in r]
  final = evals[-1][1]
  previous = metrics_io.read_json(os.path.join(workdir, 'results.json'))
  wall = previous.get('train_seconds', 0.0) + timed_seconds
  record = {
      'config': config.name, 'overrides': list(overrides), 'dataset': config.dataset,
      'params': params, 'madds': madds, 'steps': evals[-1][0],
      'train_seconds': wall,
      'images_per_second': (timed_steps * config.batch_size / timed_seconds
                            if timed_seconds else previous.get('images_per_second')),
  }
  for name in ('raw', 'ema'):
    prefix = '' if name == 'raw' else 'ema_'
    record[f'{prefix}top1'] = final[f'{name}/top1']
    record[f'{prefix}top5'] = final[f'{name}/top5']
    record[f'best_{prefix}top1'] = max(
        [r[f'eval_{name}/top1'] for r in history] + [final[f'{name}/top1']])
  return record
