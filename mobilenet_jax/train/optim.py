"""Optimizers, learning-rate schedules and weight decay, all from optax, chosen by config."""

from typing import Any

import jax
import optax

from mobilenet_jax import errors

OPTIMIZERS = ('rmsprop', 'sgd', 'adamw')
SCHEDULES = ('cosine', 'exponential', 'constant')


def base_learning_rate(config: Any) -> float:
  """The linear scaling rule: `learning_rate` is meant for `lr_base_batch_size` images a step."""
  return config.learning_rate * config.batch_size / config.lr_base_batch_size


def learning_rate_schedule(config: Any, steps_per_epoch: int, num_steps: int) -> optax.Schedule:
  """Linear warmup from 0, then cosine to `cosine_end` x the peak, exponential staircase decay,
  or constant."""
  peak = base_learning_rate(config)
  warmup = int(config.warmup_epochs * steps_per_epoch)
  if config.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(num_steps, warmup + 1),
                                              end_value=peak * config.cosine_end)
  if config.schedule == 'exponential':
    after = optax.exponential_decay(peak, transition_steps=max(
        int(config.decay_epochs * steps_per_epoch), 1), decay_rate=config.decay_rate,
        staircase=True)
  else:
    after = optax.constant_schedule(peak)
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def decay_mask(params) -> Any:
  """Weight decay applies to conv and dense kernels, never to batch-norm scales or biases."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: bool(path) and getattr(path[-1], 'key', None) == 'kernel', params)


def parameter_group(params) -> Any:
  """'classifier' for the final dense layer's parameters, 'body' for every other."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 'classifier' if getattr(path[0], 'key', None) == 'classifier' else 'body',
      params)


def create_optimizer(config: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
  """The config's optimizer; with `body_learning_rate_scale` below 1 (fine-tuning), the body's
  learning rate is that share of the schedule and the classifier's is the schedule itself."""
  scale = config.body_learning_rate_scale
  if scale == 1:
    optimizer = _optimizer(config, schedule)
  else:
    optimizer = optax.multi_transform(
        {'classifier': _optimizer(config, schedule),
         'body': _optimizer(config, lambda step: scale * schedule(step))}, parameter_group)
  if config.grad_clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
  return optimizer


def _optimizer(config: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
  if config.optimizer == 'adamw':  # decoupled weight decay, inside the optimizer
    optimizer = optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2,
                            eps=config.epsilon, weight_decay=config.weight_decay,
                            mask=decay_mask)
  else:
    # L2 regularisation as the TF recipes have it: the decay joins the gradient, then the
    # optimizer. gradient += weight_decay * w, i.e. an L2 loss of weight_decay / 2 * |w|^2.
    if config.optimizer == 'rmsprop':
      # TensorFlow's RMSProp: epsilon inside the square root, momentum on the scaled update.
      optimizer = optax.rmsprop(schedule, decay=config.rmsprop_decay, eps=config.epsilon,
                                momentum=config.momentum, eps_in_sqrt=True)
    else:
      optimizer = optax.sgd(schedule, momentum=config.momentum, nesterov=True)
    optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
                            optimizer)
  return optimizer


def validate(config: Any) -> None:
  errors.check_choice('optimizer', config.optimizer, OPTIMIZERS)
  errors.check_choice('schedule', config.schedule, SCHEDULES)
  errors.check_positive('learning_rate', config.learning_rate, allow_zero=True)
  errors.check_positive('lr_base_batch_size', config.lr_base_batch_size)
  errors.check_positive('warmup_epochs', config.warmup_epochs, allow_zero=True)
  errors.check_positive('decay_epochs', config.decay_epochs)
  errors.check_range('cosine_end', config.cosine_end, 0, 1)
  errors.check_positive('decay_rate', config.decay_rate)
  errors.check_positive('weight_decay', config.weight_decay, allow_zero=True)
  errors.check_positive('grad_clip_norm', config.grad_clip_norm, allow_zero=True)
  errors.check_positive('epsilon', config.epsilon)
  errors.check_range('momentum', config.momentum, 0, 1)
  errors.check_range('rmsprop_decay', config.rmsprop_decay, 0, 1)
  errors.check_range('label_smoothing', config.label_smoothing, 0, 1)
  errors.check_range('ema_decay', config.ema_decay, 0, 1)
  scale = config.body_learning_rate_scale
  if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 1:
    raise errors.ConfigError(f'body_learning_rate_scale={scale!r} is not allowed; it must be a '
                             'number in [0, 1] (the body\'s share of the learning rate)')
