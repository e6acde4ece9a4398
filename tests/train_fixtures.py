"""A tiny network and mock-data configs for training tests: compiles in seconds."""

import sys

import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from configs import v3_small
from mobilenet_jax import train
from mobilenet_jax.errors import Preempted
from mobilenet_jax.train import checkpointing

TINY_TABLE = (
    # block  kernel expansion out se     activation    stride repeats
    ('conv', 3,     None,     8,  False, 'hard_swish', 2,     1),
    ('ir',   3,     16,       8,  True,  'relu',       1,     1),
    ('ir',   5,     24,       16, False, 'hard_swish', 2,     1),
)
# MobileNetV5's parts in a tiny table (tiny_config's fields): RMSNorm, a stem conv with bias,
# FusedIB, UIBs (one of ratio 1), MQA with down-sampled keys and values, layer scale, the MSFA.
V5_TINY = {
    'model.blocks': (
        ('conv',  3,      None,      8,  False, 'gelu_tanh', 2, 1),
        ('fused', 3,      2,         8,  False, 'gelu_tanh', 1, 1),
        ('uib',   (3, 3), 2,         16, False, 'gelu_tanh', 2, 1),
        ('mqa',   3,      (2, 8, 2), 16, False, None,        1, 1),
        ('uib',   (0, 0), 1,         16, False, 'gelu_tanh', 1, 1),
        ('uib',   (3, 0), 2,         24, False, 'gelu_tanh', 2, 1),
    ),
    'model.expansion_unit': 'ratio', 'model.norm': 'rms_norm', 'model.bn_epsilon': 1e-6,
    'model.stem_bias': True, 'model.layer_scale_init': 1e-5, 'model.head': 'msfa',
    'model.head_width': 16, 'model.head_activation': 'gelu_tanh', 'model.msfa_resolution': 2,
}
EVAL_SPLIT = {'cifar10': 'test', 'imagenet2012': 'validation'}
CLASSES = {'cifar10': 10, 'imagenet2012': 1000}


def tiny_config(dataset: str = 'cifar10', **fields):
  config = v3_small.get_config()
  config.dataset = dataset
  config.download = True  # a no-op under tfds.testing.mock_data
  config.eval_split = EVAL_SPLIT.get(dataset, 'test')
  config.model.blocks = TINY_TABLE
  config.model.head_width = 16
  config.model.num_classes = CLASSES.get(dataset, 10)
  config.model.bn_momentum = 0.9
  config.input.image_size = 16
  config.input.preprocessing = 'small' if dataset == 'cifar10' else 'imagenet'
  config.batch_size = 8
  config.num_train_steps = 4
  config.optimizer = 'sgd'
  config.learning_rate = 0.1
  config.lr_base_batch_size = 8
  config.schedule = 'cosine'
  config.warmup_epochs = 0.0
  config.ema_decay = 0.9
  config.log_every_steps = 1
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 2
  # tfds.testing.mock_data swaps in a process-wide mock file system while a dataset is opened,
  # which a background checkpoint write would land in.
  config.async_checkpoints = False
  for key, value in fields.items():
    target = config
    *path, last = key.split('.')
    for part in path:
      target = target[part]
    target[last] = value
  return config


# Every augmentation on, at strengths that change every batch.
AUGMENTED = {'input.randaugment_layers': 2, 'input.randaugment_magnitude': 9.0,
             'input.randaugment_prob': 0.7, 'input.random_erasing_prob': 0.5,
             'input.mixup_alpha': 0.8, 'input.cutmix_alpha': 1.0, 'input.mix_prob': 0.8,
             'input.mix_switch_prob': 0.5}


# Every random draw inside the train step on, each changing every batch: dropout, stochastic
# depth (on the residual row added to the tiny table: 0.2 there, the first residual row's rate
# is 0) and Mixup or CutMix on every batch.
RANDOM_STEP = {'model.blocks': TINY_TABLE + (('ir', 3, 32, 16, False, 'relu', 1, 1),),
               'model.dropout_rate': 0.2, 'model.drop_path_rate': 0.3,
               'input.mixup_alpha': 0.8, 'input.cutmix_alpha': 1.0, 'input.mix_prob': 1.0}


def mock_data(num_examples: int = 24):
  return tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_CODE)


def train_as_the_command_does(config, workdir: str) -> None:
  """Trains on mock data and, when preempted, ends as `experiments.train` does (experiments/cli.py):
  the reason on stderr, the preemption's exit status. The driver of tests that signal a process."""
  with mock_data():
    try:
      train.train_and_evaluate(config, workdir)
    except Preempted as stop:
      print(stop, file=sys.stderr)
      sys.exit(stop.exit_status)


def restored_checkpoint(workdir, step: int | None = None) -> dict:
  """A workdir's checkpoint (the latest unless `step`) as plain arrays: params, step, ..."""
  manager = checkpointing.create_manager(str(workdir), 3)
  restored = manager.restore(manager.latest_step() if step is None else step,
                             args=ocp.args.StandardRestore())
  manager.close()
  return restored


def train_whole_and_crashed_then_resumed(config, tmp_path, monkeypatch) -> dict:
  """Trains `config` uninterrupted in tmp_path/whole, and in tmp_path/resumed with a crash right
  after the checkpoint of step 2, then the same command again; returns the resumed run's
  results. Call inside `mock_data()`."""
  train.train_and_evaluate(config, str(tmp_path / 'whole'))
  original_save = checkpointing.save

  def save_then_crash(manager, step, state):
    original_save(manager, step, state)
    if step == 2:
      manager.wait_until_finished()
      raise KeyboardInterrupt('simulated crash after the checkpoint of step 2')

  monkeypatch.setattr(checkpointing, 'save', save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  monkeypatch.setattr(checkpointing, 'save', original_save)
  return train.train_and_evaluate(config, str(tmp_path / 'resumed'))
