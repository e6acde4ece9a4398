"""Training and evaluating a run: set up, restore or initialise, loop, finish.

The loop owns all I/O (checkpoints, metrics, the console); the steps it calls are pure
(`steps.py`), compiled once over the device mesh (`parallel.py`).
"""

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mobilenet_jax.data import input_pipeline
from mobilenet_jax.errors import ConfigError, MissingRun, NonFiniteLoss, Preempted
from mobilenet_jax.interop import pretrained
from mobilenet_jax.models import complexity
from mobilenet_jax.ops import implementations
from mobilenet_jax.train import (checkpointing, metrics, parallel, periodic, preemption, setup,
                                 steps)
from mobilenet_jax.train import workdir as run_dir


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overrides: tuple[str, ...] = ()) -> dict:
  """Trains (or resumes) in `workdir` and returns the final results record."""
  run_dir.check_writable(workdir)
  checkpointing.checkpoint_dir(workdir)  # a store orbax cannot write to is refused here
  run = setup.prepare(config, workdir)  # every check; nothing is written before it passes
  with (_sole_trainer(workdir), preemption.StopRequest(config.preemption_check_every_steps) as stop,
        implementations.collecting() as chosen):
    if jax.process_index() == 0:
      run_dir.save_config(workdir, config)  # on a resume too: what the run now uses
      run_dir.save_dataset(workdir, config.dataset, run.builder.info.features['label'].names)
      run_dir.save_teachers(workdir, [t.record() for t in run.teachers])
    compiled = parallel.compile_steps(run.model, config, run.spec.steps_per_epoch, run.num_steps,
                                      teachers=run.teachers)
    manager = checkpointing.create_manager(workdir, config.keep_checkpoints,
                                           config.async_checkpoints)
    state = _restore_or_initialise(manager, compiled, run, config, workdir)
    start_step = int(state.step)
    writer = metrics.create_writer(workdir, start_step)
    params, madds = _announce(config, run)
    evaluate = functools.partial(_evaluate, compiled, run, config, writer)
    batches = input_pipeline.train_batches(run.builder, config, run.spec, start_step)
    meter = periodic.Meter(start_step, run.num_steps, config.batch_size,
                           run_dir.train_seconds_until(workdir, start_step))
    evals, interval = [], []
    for step in range(start_step + 1, run.num_steps + 1):
      with meter.waiting_for_input():
        batch = compiled.to_devices(next(batches))
      state, step_metrics = compiled.train(state, batch)
      _report_choices(chosen, workdir)  # the first step's and the first evaluation's, a line each
      interval.append(step_metrics)
      checkpointing.check(manager)
      stopping = stop.stop_now(step)
      if periodic.itstime(step, config.log_every_steps, run.num_steps):
        _log_train(writer, meter, step, run.num_steps, interval, manager, workdir,
                   len(run.teachers))
        interval = []
      if stopping or periodic.itstime(step, config.checkpoint_every_steps, run.num_steps):
        _check_finite(step, float(step_metrics['loss']), manager, workdir)
        checkpointing.save(manager, step, state)
      if stopping:
        _stop_after_the_checkpoint(manager, stop, step, workdir)
      if periodic.itstime(step, config.eval_every_steps, run.num_steps):
        with meter.paused():  # evaluation time is not training time
          evals.append((step, evaluate(step, state)))
        _report_choices(chosen, workdir)
    checkpointing.finish(manager)
    if not evals:  # the run had already finished: evaluate what it left
      evals.append((start_step, evaluate(start_step, state)))
      _report_choices(chosen, workdir)
    results = run_dir.results_record(workdir, config, overrides, params, madds, evals, meter)
    if jax.process_index() == 0:
      run_dir.write_results(workdir, results)
    manager.close()
    writer.close()
  return results


def _report_choices(chosen: list[implementations.Choice], workdir: str) -> None:
  """The 'auto' choices made since the last report, as one line; each in the workdir's file."""
  if not chosen:
    return
  line = implementations.summary(chosen)
  if jax.process_index() == 0:
    line += f'; each choice in {run_dir.append_implementations(workdir, map(str, chosen))}'
  print(line, flush=True)
  chosen.clear()


def _stop_after_the_checkpoint(manager, stop: preemption.StopRequest, step: int,
                               workdir: str) -> None:
  checkpointing.finish(manager)  # committed before we say so
  raise Preempted(f'stopped by {stop.name} at step {step}; checkpoint saved in {workdir}; '
                  'rerun the same command to resume', stop.signal_number)


def _sole_trainer(workdir: str):
  """The workdir's lock, held by the first host (the others write no run files)."""
  return run_dir.locked(workdir) if jax.process_index() == 0 else contextlib.nullcontext()


def initial_state(compiled: parallel.ParallelSteps, run: setup.Setup) -> steps.TrainState:
  """A fresh state: the model's init, or the weights of `init_from` (read by `setup`)."""
  state = compiled.init()
  if run.weights is None:
    return state
  variables = pretrained.with_classifier(run.weights, {'params': state.params,
                                                       'batch_stats': state.batch_stats})
  # Buffers of their own for each field: the train step donates the state, and two fields
  # sharing a buffer (or one aliasing the host arrays the weights were read into) would be
  # freed twice.
  variables = jax.tree.map(jnp.copy, jax.device_put(variables, compiled.replicated))
  batch_stats = variables.get('batch_stats', {})  # none with RMSNorm (V5)
  return state.replace(params=variables['params'], batch_stats=batch_stats,
                       ema_params=jax.tree.map(jnp.copy, variables['params']),
                       ema_batch_stats=jax.tree.map(jnp.copy, batch_stats))


def _restore_or_initialise(manager, compiled: parallel.ParallelSteps, run: setup.Setup,
                           config, workdir: str) -> steps.TrainState:
  state = checkpointing.restore_latest(manager, compiled.abstract_state)
  if state is None:
    return initial_state(compiled, run)
  changed = f'; changed since: {", ".join(run.changed_fields)}' if run.changed_fields else ''
  print(f'Resuming from the checkpoint of step {int(state.step)} in {workdir}{changed}.',
        flush=True)
  return state


def _announce(config, run: setup.Setup) -> tuple[int, int]:
  params, madds = complexity.model_totals(run.model, config.input.image_size)
  print(f'{config.name}: {params:,} params, {madds / 1e6:.1f}M MAdds; {run.num_steps} steps of '
        f'{config.batch_size} images ({run.spec.steps_per_epoch} an epoch) on '
        f'{jax.device_count()} devices', flush=True)
  for teacher in run.teachers:
    print(f'distilling (alpha {config.distill.alpha}, temperature '
          f'{config.distill.temperature}) from {teacher.entry}: {teacher.config.name}, '
          f'{teacher.weights}, at {teacher.config.input.image_size} px', flush=True)
  return params, madds


def _check_finite(step: int, loss: float, manager, workdir: str) -> None:
  if not np.isfinite(loss):
    raise NonFiniteLoss(f'the loss is not finite at step {step}; stopped, keeping the last good '
                        f'checkpoint (step {manager.latest_step()}) in {workdir}')


def _log_train(writer, meter: periodic.Meter, step: int, total_steps: int, interval: list,
               manager, workdir: str, num_teachers: int = 0) -> None:
  interval = jax.device_get(interval)
  summary = {k: float(np.mean([m[k] for m in interval])) for k in interval[0]}
  summary['grad_norm_max'] = float(max(m['grad_norm'] for m in interval))  # a spike, not smoothed
  _check_finite(step, summary['loss'], manager, workdir)
  rates, eta = meter.lap(step, len(interval))
  summary.update(rates)
  writer.write_scalars(step, {f'train_{k}': v for k, v in summary.items()})
  print(f'step {step}/{total_steps}  loss {summary["loss"]:.4f}  acc {summary["accuracy"]:.4f}'
        f'  lr {summary["learning_rate"]:.3g}  {summary["images_per_second"]:.0f} img/s'
        + _with_teachers(num_teachers) +
        f'  input wait {summary["input_wait_fraction"]:.0%}  ETA {periodic.format_eta(eta)}',
        flush=True)


def _with_teachers(count: int) -> str:
  """The speed's qualifier in the log: a step that runs teachers costs more."""
  return f' with {count} teacher{"s" if count > 1 else ""}' if count else ''


def _evaluate(compiled: parallel.ParallelSteps, run: setup.Setup, config, writer, step: int,
              state: steps.TrainState) -> dict:
  result = compiled.evaluate(state, input_pipeline.eval_batches(run.builder, config, run.spec))
  writer.write_scalars(step, {f'eval_{k}': v for k, v in result.items()})
  print(f'eval at step {step}: top-1 {result["raw/top1"]:.4f} (EMA {result["ema/top1"]:.4f}), '
        f'top-5 {result["raw/top5"]:.4f} (EMA {result["ema/top5"]:.4f})'
        + (f'; with the mirror images top-1 {result["raw_flip/top1"]:.4f} '
           f'(EMA {result["ema_flip/top1"]:.4f})' if config.eval_flip else '')
        + _dead_channels_note(result), flush=True)
  return result


def _dead_channels_note(result: dict) -> str:
  """The dead batch-norm channels of an evaluation's result, in words; '' when there are none."""
  raw, ema = result['raw/dead_channels'], result['ema/dead_channels']
  if not raw and not ema:
    return ''
  return f'; dead batch-norm channels {raw} (EMA {ema})'


@dataclasses.dataclass(frozen=True)
class RestoredRun:
  """A run's latest checkpoint, ready to evaluate or export."""
  config: ml_collections.ConfigDict
  setup: setup.Setup
  compiled: parallel.ParallelSteps
  state: steps.TrainState


def restore_latest_run(workdir: str,
                       config: ml_collections.ConfigDict | None = None) -> RestoredRun:
  """`workdir`'s latest checkpoint, with the run's own config unless another is given; raises
  MissingRun when the workdir holds no run or no checkpoint."""
  config = run_dir.read_config(workdir) if config is None else config
  config.init_from = ''  # the checkpoint holds the weights
  config.distill.teachers = ''  # evaluation and export need no teachers
  run = setup.prepare(config, workdir)
  if not run.resuming:
    raise MissingRun(f'--workdir={workdir} holds no run ({run_dir.CONFIG_FILE} is missing)')
  compiled = parallel.compile_steps(run.model, config, run.spec.steps_per_epoch, run.num_steps)
  manager = checkpointing.create_manager(workdir, config.keep_checkpoints, asynchronous=False)
  state = checkpointing.restore_latest(manager, compiled.abstract_state)
  manager.close()
  if state is None:
    raise MissingRun(f'--workdir={workdir} has no checkpoint yet')
  return RestoredRun(config, run, compiled, state)


def evaluate_latest(workdir: str, config: ml_collections.ConfigDict | None = None
                    ) -> tuple[int, dict]:
  """(step, metrics) of the latest checkpoint in `workdir` on the eval split."""
  run = restore_latest_run(workdir, config)
  return int(run.state.step), run.compiled.evaluate(
      run.state, input_pipeline.eval_batches(run.setup.builder, run.config, run.setup.spec))


def evaluate_imported(config: ml_collections.ConfigDict) -> dict:
  """Metrics of the weights of `config.init_from` on `config.eval_split`."""
  if not config.init_from:
    raise ConfigError('init_from is empty; name the weights to evaluate')
  run = setup.prepare(config, None)
  compiled = parallel.compile_steps(run.model, config, run.spec.steps_per_epoch, run.num_steps)
  state = initial_state(compiled, run)
  return compiled.evaluate(state, input_pipeline.eval_batches(run.builder, config, run.spec))
