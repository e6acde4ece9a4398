"""The train state and the pure step functions: (state, batch) in, (state, metrics) out.

Everything a step depends on is an argument; `parallel.compile_steps` binds the run's values
once with `functools.partial`, so what the compiled step reads is visible at its signature.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from mobilenet_jax.train.distill import Distillation
from mobilenet_jax.train.mixing import Mixing, mix

# Folded into the step's dropout key for the Mixup/CutMix key: a stream of its own.
_MIX_STREAM = 0x6D6978


class TrainState(train_state.TrainState):
  batch_stats: Any
  ema_params: Any
  # The EMA weights' own batch-norm statistics, averaged as the weights are (as timm's model EMA
  # does): mid-run the raw model's running statistics do not describe the averaged weights.
  ema_batch_stats: Any

  def variables(self, weights: str) -> dict:
    """The model's variables of the 'raw' or the 'ema' weights, each with its own statistics."""
    if weights == 'raw':
      return {'params': self.params, 'batch_stats': self.batch_stats}
    return {'params': self.ema_params, 'batch_stats': self.ema_batch_stats}

  def with_fields_added_since(self) -> 'TrainState':
    """This state with the fields that a checkpoint of an older version lacks (restored as
    None) filled in: the EMA statistics of a run that had none start from the raw ones."""
    if self.ema_batch_stats is not None:
      return self
    # A buffer of its own: the train step donates the state (see `loop.initial_state`).
    return self.replace(ema_batch_stats=jax.tree.map(jnp.copy, self.batch_stats))


def create_train_state(model: nn.Module, image_size: int, seed: int,
                       tx: optax.GradientTransformation) -> TrainState:
  variables = model.init(jax.random.key(seed), jnp.zeros((1, image_size, image_size, 3)))
  batch_stats = variables.get('batch_stats', {})  # none with RMSNorm (V5)
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           batch_stats=batch_stats, ema_params=variables['params'],
                           ema_batch_stats=batch_stats)


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """TensorFlow's EMA with num_updates: the average warms up as (1 + n) / (10 + n)."""
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def train_step(state: TrainState, batch: dict, teachers: tuple = (), *,
               schedule: optax.Schedule, num_classes: int, label_smoothing: float,
               ema_decay: float, dropout_seed: int, mixing: Mixing = Mixing(),
               distillation: Distillation | None = None) -> tuple[TrainState, dict]:
  """One optimizer step on `batch`; `ema_decay` 0 makes the EMA weights and their batch-norm
  statistics the raw ones. Mixup and CutMix (`mixing`) mix the smoothed targets; the reported
  accuracy is against the batch's own labels. With `distillation`, the frozen teachers (their
  variables: `teachers`) see the same mixed images, and the loss is `distillation.loss`."""
  dropout_key = jax.random.fold_in(jax.random.key(dropout_seed), state.step)
  images = batch['image']
  targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], num_classes), label_smoothing)
  if mixing.enabled:
    images, targets = mix(jax.random.fold_in(dropout_key, _MIX_STREAM), images, targets, mixing)
  if distillation is not None:
    teacher_logits = distillation.teacher_logits(teachers, images)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, images, train=True,
        mutable=['batch_stats'], rngs={'dropout': dropout_key})
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    if distillation is not None:
      loss = distillation.loss(loss, logits, teacher_logits)
    return loss, (logits, updates.get('batch_stats', {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  averaged = (new_state.params, new_state.batch_stats)
  if ema_decay > 0:
    decay = ema_decay_at(state.step, ema_decay)
    averaged = optax.incremental_update(averaged, (state.ema_params, state.ema_batch_stats),
                                        step_size=1.0 - decay)
  new_state = new_state.replace(ema_params=averaged[0], ema_batch_stats=averaged[1])
  metrics = {'loss': loss,
             'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
             'learning_rate': schedule(state.step),
             # Before any clipping (grad_clip_norm): the norm that spikes when training does.
             'grad_norm': optax.global_norm(grads)}
  return new_state, metrics


# What an evaluation reports, by the prefix of its metrics: the raw and EMA weights on the
# images, and (with config.eval_flip) on the images and their mirror images, logits averaged.
VIEWS = {'raw': 'raw weights', 'ema': 'EMA weights', 'raw_flip': 'raw, + mirror',
         'ema_flip': 'EMA, + mirror'}


def eval_step(state: TrainState, batch: dict, flip: bool = False) -> dict:
  """Sums over the batch for the raw and the EMA weights, each with its own batch-norm
  statistics; padding examples (mask 0) count for nothing. With `flip`, also for the logits
  averaged with those of each image's mirror image ('raw_flip/top1', ...): the flip that
  training augments with, undone at test time, beside the single view, never instead of it."""
  mask = batch['mask'].astype(jnp.float32)
  labels = batch['label']
  sums = {'count': mask.sum()}
  for name in ('raw', 'ema'):
    variables = state.variables(name)
    views = {name: state.apply_fn(variables, batch['image'], train=False)}
    if flip:
      mirrored = state.apply_fn(variables, batch['image'][:, :, ::-1], train=False)
      views[f'{name}_flip'] = (views[name] + mirrored) / 2
    for view, logits in views.items():
      top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]  # a folder may have 2-4 classes
      sums[f'{view}/top1'] = ((top5[:, 0] == labels) * mask).sum()
      sums[f'{view}/top5'] = (jnp.any(top5 == labels[:, None], axis=-1) * mask).sum()
      sums[f'{view}/loss'] = (optax.softmax_cross_entropy_with_integer_labels(logits, labels)
                              * mask).sum()
  return sums


# A batch-normalized channel whose running variance has fallen under this saw the same value on
# every training batch of its last hundreds of steps (a standard deviation under 1e-5; the live
# channels of the project's runs sit above 1e-7): a ReLU before it that no longer fires. AdamW
# with epsilon 1e-8 grows hundreds of them, with 1e-3 none (docs/fashion_mnist_runs.md). Harmless
# on the training images, but a rare image that does reach one is scaled by 1/sqrt(epsilon) of
# the batch norm there, and its logits can explode.
DEAD_VARIANCE = 1e-10


def _running_variances(batch_stats: Any) -> list[jax.Array]:
  return [v for path, v in jax.tree_util.tree_leaves_with_path(batch_stats)
          if getattr(path[-1], 'key', None) == 'var']


def dead_channels(state: TrainState) -> dict:
  """How many batch-normalized channels of the raw and of the EMA weights are dead (a running
  variance under DEAD_VARIANCE): 'raw/dead_channels', 'ema/dead_channels'."""
  counts = {}
  for name in ('raw', 'ema'):
    variances = _running_variances(state.variables(name)['batch_stats'])
    counts[f'{name}/dead_channels'] = sum(jnp.sum(v < DEAD_VARIANCE) for v in variances)
  return counts
