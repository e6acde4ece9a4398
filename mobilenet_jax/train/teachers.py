"""The teachers of a distillation (`config.distill.teachers`), read once, before anything is
compiled or written, and checked against the student.

`config.distill.teachers` names them, comma-separated, each either
  RUN_DIR               a run of ours: its config.json and its latest checkpoint, the EMA weights
                        (with their own batch-norm statistics) when the run kept an EMA
                        (ema_decay > 0), else the raw ones; read without writing in that workdir,
                        which may be training still
  CONFIG@SOURCE:PATH    published weights and the config they fit, read as `init_from` reads them
                        (`configs/v4_conv_medium.py@timm:model.safetensors`); a comma inside
                        CONFIG separates its variants, as in --config
                        (`configs/v3_large.py:minimalistic,small_image@timm:W.pth`).
A teacher must have the student's classes and have been trained on its dataset (one label space).
Each teacher's checksum (of the variables it gives) is what a resume compares
(`workdir.check_teachers`).
"""

import dataclasses
import hashlib
import importlib.util
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from mobilenet_jax import errors
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop import pretrained
from mobilenet_jax.models import architecture
from mobilenet_jax.models.registry import create_model
from mobilenet_jax.train import workdir as run_dir

FIELD = 'distill.teachers'


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A frozen network and what it was trained to see."""
  entry: str                     # as given in distill.teachers
  config: ml_collections.ConfigDict  # its own: architecture, input size and normalization
  model: nn.Module
  variables: Any                 # {'params', 'batch_stats'}: host arrays
  weights: str                   # what was read, in words
  checksum: str                  # of `variables`' contents

  @property
  def num_classes(self) -> int:
    return self.model.num_classes

  def record(self) -> dict:
    """What the student's workdir keeps of this teacher (`workdir.save_teachers`)."""
    return {'teacher': self.entry, 'config': self.config.name, 'weights': self.weights,
            'checksum': self.checksum}


def check_fields(config: ml_collections.ConfigDict) -> None:
  errors.check_probability('distill.alpha', config.distill.alpha)
  errors.check_positive('distill.temperature', config.distill.temperature)


def entries(teachers: str) -> list[str]:
  """The teachers of the comma-separated `teachers`; a comma after CONFIG's variants
  (before its '@') separates variants, not teachers."""
  out = []
  for piece in teachers.split(','):
    piece = piece.strip()
    if out and '@' not in out[-1] and '.py:' in out[-1]:
      out[-1] += ',' + piece
    elif not piece:
      raise ConfigError(f'{FIELD}={teachers!r} is not allowed; an entry is empty (give RUN_DIR '
                        'or CONFIG@SOURCE:PATH, comma-separated)')
    else:
      out.append(piece)
  return out


def load_teachers(config: ml_collections.ConfigDict) -> tuple[Teacher, ...]:
  """The teachers of `config.distill.teachers`, read and checked against the student (classes,
  dataset); raises ConfigError before anything is compiled or written. Writes nothing."""
  if not config.distill.teachers:
    return ()
  return tuple(_from_published(entry, config) if '@' in entry else _from_run(entry, config)
               for entry in entries(config.distill.teachers))


def _refuse(entry: str, why: str) -> ConfigError:
  return ConfigError(f'{FIELD} entry {entry!r} is not allowed; {why}')


def _check_fits(entry: str, dataset: str, classes: int,
                student: ml_collections.ConfigDict) -> None:
  if dataset != student.dataset:
    raise _refuse(entry, f'it was trained on {dataset}, the student trains on '
                  f'{student.dataset}: another label space')
  if classes != student.model.num_classes:
    raise _refuse(entry, f'it has {classes} classes, the student '
                  f'model.num_classes={student.model.num_classes}')


def checksum(variables: Any) -> str:
  """A digest of every array of `variables` and its path: what a resume compares."""
  digest = hashlib.blake2b(digest_size=16)
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    value = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f'{jax.tree_util.keystr(path)} {value.dtype} {value.shape}'.encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def _from_run(entry: str, student: ml_collections.ConfigDict) -> Teacher:
  """The latest checkpoint of a run of ours, read without writing in its workdir (it may be
  training still)."""
  if not os.path.isfile(os.path.join(entry, run_dir.CONFIG_FILE)):
    raise _refuse(entry, f'no run there ({os.path.join(entry, run_dir.CONFIG_FILE)} is '
                  'missing); give RUN_DIR or CONFIG@SOURCE:PATH')
  config = run_dir.read_config(entry)
  _check_fits(entry, config.dataset, config.model.num_classes, student)
  model = create_model(config.model)
  directory = os.path.join(os.path.abspath(entry), run_dir.CHECKPOINTS_DIR)
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      create=False, read_only=True))
  step = manager.latest_step() if os.path.isdir(directory) else None
  if step is None:
    manager.close()
    raise _refuse(entry, 'the run has no checkpoint yet')
  try:
    state = manager.restore(step, args=ocp.args.StandardRestore())
  except Exception as error:  # pylint: disable=broad-exception-caught
    raise _refuse(entry, f'its checkpoint of step {step} cannot be read '
                  f'({type(error).__name__})') from None
  finally:
    manager.close()
  ema = config.ema_decay > 0
  params = state['ema_params' if ema else 'params']
  # A checkpoint of a version before the EMA kept its own statistics: the raw ones.
  batch_stats = state.get('ema_batch_stats') if ema else None
  variables = {'params': params,
               'batch_stats': state['batch_stats'] if batch_stats is None else batch_stats}
  variables = jax.tree.map(np.asarray, variables)
  weights = f'{"EMA" if ema else "raw"} weights of step {step}'
  return Teacher(entry, config, model, variables, weights, checksum(variables))


def _load_config(entry: str, spec: str) -> ml_collections.ConfigDict:
  """The config of `configs/FILE.py[:VARIANTS]`, as --config loads it."""
  path, _, arg = spec.partition(':')
  if not path.endswith('.py') or not os.path.isfile(path):
    raise _refuse(entry, f'no config file {path!r} (give RUN_DIR or CONFIG@SOURCE:PATH, '
                  'CONFIG as in --config)')
  spec_ = importlib.util.spec_from_file_location(
      f'teacher_config_{os.path.basename(path)[:-3]}', path)
  module = importlib.util.module_from_spec(spec_)
  spec_.loader.exec_module(module)
  try:
    return module.get_config(arg or None)
  except ConfigError as error:  # an unknown variant
    raise _refuse(entry, str(error)) from None


def _from_published(entry: str, student: ml_collections.ConfigDict) -> Teacher:
  """Published weights (`init_from`'s sources) with the config they fit."""
  spec, _, weights = entry.partition('@')
  config = _load_config(entry, spec)
  _check_fits(entry, config.dataset, student.model.num_classes, student)  # classes: below
  config.init_from = weights
  try:
    pretrained.configure(config)  # the fields the weights imply (input normalization, ...)
    model = create_model(config.model)
    variables = pretrained.read(config, model)
  except ConfigError as error:
    raise _refuse(entry, str(error)) from None
  variables = jax.tree.map(np.asarray, variables)
  classes = variables['params']['classifier']['kernel'].shape[-1]
  _check_fits(entry, config.dataset, classes, student)
  return Teacher(entry, config, model.clone(num_classes=classes), variables, weights,
                 checksum(variables))


def random_teacher(spec: str, num_classes: int, seed: int = 0) -> Teacher:
  """A teacher of the config `configs/FILE.py[:VARIANTS]` with random weights and the student's
  `num_classes`: for timing a step (experiments/benchmark.py --teacher), never for training."""
  config = _load_config(spec, spec)
  config.model.num_classes = num_classes
  model = create_model(config.model)
  architecture.check_image_size(model.architecture, config.input.image_size)
  size = config.input.image_size
  variables = jax.jit(lambda: model.init(jax.random.key(seed),
                                         jnp.zeros((1, size, size, 3)), train=False))()
  variables = jax.device_get(variables)
  return Teacher(spec, config, model, variables, 'random weights', checksum(variables))
