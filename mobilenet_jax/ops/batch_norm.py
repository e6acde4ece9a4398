"""Batch normalisation over all axes but the last, with a hand-written gradient.

Same function, variables and names as `flax.linen.BatchNorm` (params 'scale' and 'bias',
batch_stats 'mean' and 'var'), so checkpoints and imported weights carry over. The reason it
exists: differentiated automatically, the training-mode normalisation makes several passes over
the activations on XLA:CPU; the textbook gradient needs two (one for the two per-channel sums,
one for the input gradient), 1.5x faster on a 32x112x112x64 batch, and batch norm is most of a
MobileNet's memory traffic.

Mixed precision: the input arrives in the compute dtype (bfloat16) and is kept in it as the
gradient's residual, the activation memory the backward pass holds; the statistics, the
normalisation and the gradient are computed in float32 from it, inside the fusions that read it.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _axes(x: jax.Array) -> tuple[int, ...]:
  return tuple(range(x.ndim - 1))


def _moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  # E[x^2] - E[x]^2 in one pass over x, as flax's use_fast_variance; x is float32.
  mean = jnp.mean(x, _axes(x))
  return mean, jnp.maximum(jnp.mean(x * x, _axes(x)) - mean * mean, 0.0)


def _standardize(x, mean, inv_std, scale, bias):
  """scale * (x - mean) * inv_std + bias: the one normalisation of train and eval mode."""
  return (x - mean) * (scale * inv_std) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_batch(x, scale, bias, epsilon: float):
  """(scale * (x - mean) / sqrt(var + epsilon) + bias, mean, var) over the batch's statistics,
  all float32 whatever x's dtype (float32 or a lower compute dtype, kept so as the residual)."""
  return _normalize_forward(x, scale, bias, epsilon)[0]


def _float32(x: jax.Array) -> jax.Array:
  return x.astype(jnp.promote_types(jnp.float32, x.dtype))


def _normalize_forward(x, scale, bias, epsilon):
  mean, var = _moments(_float32(x))
  inv_std = lax.rsqrt(var + epsilon)
  y = _standardize(_float32(x), mean, inv_std, scale, bias)
  # x itself, not its float32 copy, which would double what the backward pass holds of every
  # batch-normalised activation wherever XLA does not fuse the convert away (inside one jit on
  # XLA:CPU it did; not so under jax.vjp outside jit or a checkpoint policy: docs/bfloat16.md).
  return (y, mean, var), (x, scale, mean, inv_std)


def _normalize_backward(epsilon, residuals, cotangents):
  del epsilon  # in inv_std
  x_saved, scale, mean, inv_std = residuals
  x = _float32(x_saved)
  grad_y, grad_mean, grad_var = cotangents
  count = x.size // x.shape[-1]
  grad_sum = jnp.sum(grad_y, _axes(x))
  grad_bias = grad_sum
  grad_scale = (jnp.sum(grad_y * x, _axes(x)) - mean * grad_sum) * inv_std  # sum(g * x_hat)
  centered = x - mean
  # Through the batch statistics: y's, then the (normally zero) cotangents of mean and var.
  grad_x = (scale * inv_std) * (grad_y - (grad_sum + centered * inv_std * grad_scale) / count)
  grad_x = grad_x + (grad_mean + 2.0 * centered * grad_var) / count
  return grad_x.astype(x_saved.dtype), grad_scale, grad_bias


normalize_batch.defvjp(_normalize_forward, _normalize_backward)


def _normalize_groups(x, scale, bias, epsilon: float, group_size: int):
  """`normalize_batch` over each group of `group_size` examples (0: the batch); the mean and
  variance returned are the groups' means."""
  if not group_size or group_size == x.shape[0]:
    return normalize_batch(x, scale, bias, epsilon)
  groups = x.reshape(-1, group_size, *x.shape[1:])
  y, mean, var = jax.vmap(normalize_batch, (0, None, None, None))(groups, scale, bias, epsilon)
  return y.reshape(x.shape), jnp.mean(mean, 0), jnp.mean(var, 0)


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm(axis=-1)`'s function and variables, with a two-pass gradient.

  Statistics and parameters are float32, and so is the arithmetic; the input is kept in its own
  dtype, the output is in `dtype` (the compute dtype).
  group_size > 0 normalises each group of that many consecutive examples by its own statistics
  (grouped batch norm, as TPU recipes use; the running statistics take the groups' means): a
  group that divides each device's share of the batch needs no cross-device reduction.
  """
  use_running_average: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-3
  dtype: jnp.dtype = jnp.float32
  group_size: int = 0  # 0: the whole batch

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    if self.use_running_average:
      y = _standardize(_float32(x), running_mean.value,
                       lax.rsqrt(running_var.value + self.epsilon), scale, bias)
    else:
      y, mean, var = _normalize_groups(x, scale, bias, self.epsilon, self.group_size)
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    return y.astype(self.dtype)
