"""A run's steps jit-compiled over a one-axis device mesh, and the moves of host data onto it.

Batches are sharded over 'data', the state is replicated, so batch-norm statistics and gradients
are means over the global batch on one CPU, eight simulated devices, a GPU or a TPU slice alike.
"""

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mobilenet_jax import errors
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.train import distill, mixing, optim, steps

HOST_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')


def initialize_hosts() -> None:
  """Joins this process to the others of a run on several hosts.

  With JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set, from those (JAX reads
  none of them itself); without, as `jax.distributed.initialize()` finds the cluster (TPU pods,
  SLURM). Processes on CPUs exchange data over gloo.
  """
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  given = {name: os.environ.get(name) for name in HOST_VARIABLES}
  kwargs = {}
  if any(given.values()):
    missing = [name for name, value in given.items() if not value]
    if missing or not all(given[n].isdigit() for n in HOST_VARIABLES[1:]):
      raise ConfigError('--distributed with ' + ', '.join(f'{k}={v}' for k, v in given.items())
                        + ' is not allowed; set all three (an address host:port and two '
                        'integers)')
    kwargs = {'coordinator_address': given['JAX_COORDINATOR_ADDRESS'],
              'num_processes': int(given['JAX_NUM_PROCESSES']),
              'process_id': int(given['JAX_PROCESS_ID'])}
  try:
    jax.distributed.initialize(**kwargs)
  except ValueError as error:
    raise ConfigError(f'--distributed could not find the other hosts ({error}); outside TPU '
                      f'pods and SLURM set {", ".join(HOST_VARIABLES)}') from None


@dataclasses.dataclass(frozen=True)
class ParallelSteps:
  mesh: Mesh
  schedule: optax.Schedule
  abstract_state: Any        # shapes, dtypes and shardings: what a checkpoint restores into
  init: Callable[[], steps.TrainState]
  train_step: Callable[[steps.TrainState, dict], tuple[steps.TrainState, dict]]
  eval_step: Callable[[steps.TrainState, dict], dict]
  dead_channels: Callable[[steps.TrainState], dict]
  # The teachers' variables on the mesh, replicated, when distilling: the train step's third
  # argument (never part of the state, so never in its checkpoint).
  teachers: tuple = ()

  def train(self, state: steps.TrainState, batch: dict) -> tuple[steps.TrainState, dict]:
    """One train step, given the teachers' variables when distilling."""
    if self.teachers:
      return self.train_step(state, batch, self.teachers)
    return self.train_step(state, batch)

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def sharded(self) -> NamedSharding:
    return NamedSharding(self.mesh, P('data'))

  def to_devices(self, batch: dict) -> dict:
    """This process's share of a global batch, as one array sharded over every host's devices."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.sharded, x), batch)

  def evaluate(self, state: steps.TrainState, batches: Iterable[dict]) -> dict:
    """Means over the real examples of `batches` (raw and EMA top-1, top-5 and loss), and the
    counts of dead batch-norm channels ('raw/dead_channels', 'ema/dead_channels')."""
    sums = None
    for batch in batches:
      out = self.eval_step(state, self.to_devices(batch))
      sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    sums = jax.device_get(sums)
    count = max(float(sums.pop('count')), 1.0)
    dead = jax.device_get(self.dead_channels(state))
    return {**{k: float(v) / count for k, v in sums.items()},
            **{k: int(v) for k, v in dead.items()}}


def check_batch(config: ml_collections.ConfigDict) -> None:
  """The fields that shape the step's batch over the devices: `batch_size` divides evenly, and
  `input.mix_group_size` and `model.bn_group_size` are 0 (the whole batch) or divide the batch,
  so that the groups are a function of the config; raises ConfigError before anything compiles."""
  errors.check_int('batch_size', config.batch_size, minimum=1)
  devices = jax.device_count()
  if config.batch_size % devices:
    raise ConfigError(f'batch_size={config.batch_size} is not allowed; it must be divisible by '
                      f'the {devices} devices')
  for field, size in (('input.mix_group_size', config.input.mix_group_size),
                      ('model.bn_group_size', config.model.bn_group_size)):
    errors.check_int(field, size, minimum=0)
    if size and config.batch_size % size:
      raise ConfigError(f'{field}={size} is not allowed; it must be 0 (the whole batch) or '
                        f'divide batch_size={config.batch_size}')


def compile_steps(model: nn.Module, config: ml_collections.ConfigDict, steps_per_epoch: int,
                  num_steps: int, devices=None, teachers: tuple = ()) -> ParallelSteps:
  """The init, train and eval steps of `config`'s recipe for `model`, over `devices` (all);
  with `teachers` (`teachers.Teacher`), the train step distills them."""
  mesh = Mesh(np.asarray(jax.devices() if devices is None else devices), ('data',))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  schedule = optim.learning_rate_schedule(config, steps_per_epoch, num_steps)
  init = functools.partial(steps.create_train_state, model, config.input.image_size,
                           config.seed, optim.create_optimizer(config, schedule))
  shapes = jax.eval_shape(init)
  state_sharding = jax.tree.map(lambda _: replicated, shapes)
  abstract_state = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, state_sharding)
  train_step = functools.partial(
      steps.train_step, schedule=schedule, num_classes=model.num_classes,
      label_smoothing=config.label_smoothing, ema_decay=config.ema_decay,
      dropout_seed=config.seed + 1, mixing=mixing.Mixing.from_config(config.input))
  eval_step = functools.partial(steps.eval_step, flip=config.eval_flip)
  in_shardings = (state_sharding, sharded)
  teacher_variables = ()
  if teachers:
    train_step = functools.partial(train_step,
                                   distillation=distill.Distillation.create(config, teachers))
    in_shardings += (replicated,)
    teacher_variables = jax.device_put(tuple(t.variables for t in teachers), replicated)
  return ParallelSteps(
      mesh=mesh, schedule=schedule, abstract_state=abstract_state,
      init=jax.jit(init, out_shardings=state_sharding),
      train_step=jax.jit(_traced_over(mesh, train_step), in_shardings=in_shardings,
                         out_shardings=(state_sharding, None), donate_argnums=0),
      eval_step=jax.jit(_traced_over(mesh, eval_step), in_shardings=(state_sharding, sharded)),
      dead_channels=jax.jit(steps.dead_channels, in_shardings=(state_sharding,)),
      teachers=teacher_variables)


def _traced_over(mesh: Mesh, step: Callable) -> Callable:
  """`step`, traced with `mesh` in context: 'auto' implementations measure one device's share of
  the batch (ops/implementations.py), not the global batch."""
  def traced(*args):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return step(*args)
  return traced
