"""What a run checks before it compiles or writes anything: the config, the workdir's earlier
run, the weights of `init_from` and the data.

Two steps, kept apart: `pretrained.configure` changes the config where the weights of
`init_from` imply fields (and says so), then `build_model` only checks and builds.
"""

import dataclasses
import math

import flax.linen as nn
import ml_collections
import tensorflow_datasets as tfds

from mobilenet_jax import errors
from mobilenet_jax.data import datasets, input_pipeline, preprocessing
from mobilenet_jax.interop import pretrained
from mobilenet_jax.models import architecture
from mobilenet_jax.models.registry import create_model
from mobilenet_jax.train import hosts, optim, parallel, teachers, workdir as run_dir

PREPROCESSING = ('imagenet', 'small')
# Four times the largest resolution the MobileNet papers train at (384 px for V4's largest):
# beyond it a typo (100000) would only surface as an out-of-memory error after compiling.
MAX_IMAGE_SIZE = 1536
# RandAugment's magnitude: 10 is the paper's strongest tuned setting, the V4 recipes use 15; at
# 30 rotations reach 90 degrees and translations move the image out of the frame.
MAX_RANDAUGMENT_MAGNITUDE = 30
PERIODS = ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
           'preemption_check_every_steps')


@dataclasses.dataclass(frozen=True)
class Setup:
  """A checked run: its model, its data, how long it trains, and whether it resumes."""
  model: nn.Module
  builder: tfds.core.DatasetBuilder
  spec: input_pipeline.InputSpec
  num_steps: int
  resuming: bool
  weights: dict | None = None          # init_from's variables, for a run that starts
  changed_fields: tuple[str, ...] = ()  # config fields changed since the run's last session
  teachers: tuple = ()                  # config.distill.teachers, read (`teachers.Teacher`)


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  """Checks every field a run uses and builds the model; raises ConfigError before any work."""
  datasets.check_known(config.dataset)
  model = create_model(config.model)
  architecture.check_image_size(model.architecture, config.input.image_size)
  _check_input(config.input)
  parallel.check_batch(config)
  if config.num_train_steps <= 0:
    errors.check_positive('num_epochs', config.num_epochs)
  for field in PERIODS:
    errors.check_int(field, config[field], minimum=1)
  optim.validate(config)
  teachers.check_fields(config)
  return model


def _check_input(fields: ml_collections.ConfigDict) -> None:
  if fields.image_size > MAX_IMAGE_SIZE:
    raise errors.ConfigError(f'input.image_size={fields.image_size} is not allowed; at most '
                             f'{MAX_IMAGE_SIZE}')
  errors.check_choice('input.preprocessing', fields.preprocessing, PREPROCESSING)
  errors.check_choice('input.random_flip', fields.random_flip, (True, False))
  errors.check_int('input.crop_padding', fields.crop_padding, minimum=0)
  if (isinstance(fields.crop_fraction, bool) or not isinstance(fields.crop_fraction, (int, float))
      or not 0 < fields.crop_fraction <= 1):
    raise errors.ConfigError(f'input.crop_fraction={fields.crop_fraction!r} is not allowed; it '
                             'must be a number in (0, 1]')
  errors.check_choice('input.interpolation', fields.interpolation, preprocessing.INTERPOLATIONS)
  errors.check_choice('input.train_interpolation', fields.train_interpolation,
                      preprocessing.INTERPOLATIONS)
  errors.check_choice('input.eval_decode', fields.eval_decode, preprocessing.EVAL_DECODES)
  errors.check_int('input.prefetch_batches', fields.prefetch_batches, minimum=1)
  for field in ('mean', 'std'):
    value = fields[field]
    if (isinstance(value, str) or not hasattr(value, '__len__') or len(value) != 3
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)):
      raise errors.ConfigError(f'input.{field}={value!r} is not allowed; it must be 3 numbers, '
                               'one per RGB channel (of pixels in [0, 255])')
  if min(fields.std) <= 0:
    raise errors.ConfigError(f'input.std={fields.std!r} is not allowed; every value must be > 0')
  _check_augmentations(fields)


def _check_augmentations(fields: ml_collections.ConfigDict) -> None:
  errors.check_int('input.randaugment_layers', fields.randaugment_layers, minimum=0)
  errors.check_range('input.randaugment_magnitude', fields.randaugment_magnitude, 0,
                     MAX_RANDAUGMENT_MAGNITUDE)
  for field in ('randaugment_prob', 'random_erasing_prob', 'mix_prob', 'mix_switch_prob'):
    errors.check_probability(f'input.{field}', fields[field])
  area = fields.random_erasing_area
  if (isinstance(area, str) or not hasattr(area, '__len__') or len(area) != 2
      or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in area)
      or not 0 < area[0] <= area[1] <= 1):
    raise errors.ConfigError(f'input.random_erasing_area={area!r} is not allowed; it must be '
                             '(low, high) with 0 < low <= high <= 1, shares of the image')
  for field in ('mixup_alpha', 'cutmix_alpha'):
    errors.check_positive(f'input.{field}', fields[field], allow_zero=True)


def num_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """`num_train_steps` when positive, else `num_epochs` of `steps_per_epoch`."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  return max(int(math.ceil(config.num_epochs * steps_per_epoch)), 1)


def prepare(config: ml_collections.ConfigDict, workdir: str | None) -> Setup:
  """Checks the config, the workdir's earlier run (if any), init_from's weights and the data.
  Writes nothing."""
  changes = pretrained.configure(config) + datasets.configure(config)
  model = build_model(config)
  # Process 0's answer on every host: a host that looked after process 0 wrote config.json would
  # skip init_from and start from other weights than the rest.
  resuming = workdir is not None and bool(hosts.from_first_host(
      run_dir.check_config(workdir, config)))
  weights = pretrained.read(config, model) if config.init_from and not resuming else None
  frozen = teachers.load_teachers(config)  # nothing of them is written before all is checked
  if resuming:
    run_dir.check_teachers(workdir, config, [t.record() for t in frozen])
  builder = datasets.load_builder(config)
  spec = input_pipeline.describe(builder, config, datasets.split_size)
  if spec.num_classes != model.num_classes:
    raise errors.ConfigError(
        f'model.num_classes={model.num_classes} is not allowed; {config.dataset} has '
        f'{spec.num_classes} classes')
  changed = tuple(run_dir.changed_fields(workdir, config)) if resuming else ()
  for line in changes:  # said once everything is checked: a bad input stays one line
    print(line, flush=True)
  return Setup(model, builder, spec, num_steps(config, spec.steps_per_epoch), resuming, weights,
               changed, frozen)
