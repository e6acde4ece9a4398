"""The small pieces every MobileNet is made of: activations, conv-BN-act, squeeze-and-excite, and
the residual branch's layer scale and stochastic depth."""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.ops.batch_norm import BatchNorm
from mobilenet_jax.ops.conv import Conv
from mobilenet_jax.ops.depthwise import DepthwiseConv

ModuleDef = Any

# One function per name of `architecture.ACTIVATIONS`.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'relu6': jax.nn.relu6,
    'hard_swish': jax.nn.hard_swish,      # x * relu6(x + 3) / 6
    'hard_sigmoid': jax.nn.hard_sigmoid,  # relu6(x + 3) / 6
    # The exact GELU (erf), as PyTorch's nn.GELU that timm's Hybrid-L weights were trained with;
    # JAX's default is the tanh approximation.
    'gelu': functools.partial(jax.nn.gelu, approximate=False),
    'gelu_tanh': functools.partial(jax.nn.gelu, approximate=True),  # timm's 'gelu_tanh'
}

# Initialisers of the reference implementations (torchvision): He-normal over fan-out for
# convolutions, N(0, 0.01) for fully connected layers, zero biases.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
dense_init = nn.initializers.normal(0.01)


def float32_dot_general(lhs, rhs, dimension_numbers, precision=None, **kwargs) -> jax.Array:
  """A matmul whose products are accumulated and returned in float32 at least, whatever its
  inputs' dtype (bfloat16 compute; float64 stays float64): for the few outputs that must stay
  float32, the logits."""
  kwargs['preferred_element_type'] = jnp.promote_types(jnp.result_type(lhs, rhs), jnp.float32)
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision, **kwargs)


def activate(name: str | None, x: jax.Array) -> jax.Array:
  return x if name is None else ACTIVATIONS[name](x)


class ConvBN(nn.Module):
  """Convolution (without bias unless `use_bias`), batch norm, then an optional activation.

  `norm` arrives bound to train/eval mode by the network, so blocks never know which they are in;
  it is RMSNorm where `model.norm` says so (V5), still named 'bn' as timm names it.
  """
  features: int
  kernel_size: int = 1
  strides: int = 1
  activation: str | None = None
  depthwise: bool = False
  norm: ModuleDef = BatchNorm
  padding: str = 'symmetric'
  depthwise_implementation: str = 'auto'
  conv_implementation: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  use_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.strides
    if self.depthwise:
      if self.features != x.shape[-1]:
        raise ValueError(f'a depthwise conv keeps its width: {x.shape[-1]} != {self.features}')
      x = DepthwiseConv(k, s, self.padding, self.depthwise_implementation, self.dtype,
                        name='conv')(x)
    else:
      x = Conv(self.features, k, s, self.padding, self.conv_implementation, self.dtype,
               kernel_init=conv_init, use_bias=self.use_bias, name='conv')(x)
    x = self.norm(name='bn')(x)
    return activate(self.activation, x)


class SqueezeExcite(nn.Module):
  """Channel attention: global pool, reduce, ReLU, expand, gate, rescale the input."""
  squeeze_width: int
  gate: str = 'hard_sigmoid'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = jnp.mean(x, axis=(1, 2))  # (N, C): rank-2 matmuls, which TFLite's converter needs
    scale = nn.Dense(self.squeeze_width, dtype=self.dtype, kernel_init=conv_init,
                     name='reduce')(scale)
    scale = nn.relu(scale)
    scale = nn.Dense(x.shape[-1], dtype=self.dtype, kernel_init=conv_init, name='expand')(scale)
    return x * activate(self.gate, scale)[:, None, None, :]


class LayerScale(nn.Module):
  """Per-channel scale of a residual branch (MobileNetV4's hybrids), initialised small."""
  init_value: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param('scale', nn.initializers.constant(self.init_value), (x.shape[-1],),
                       jnp.float32)
    return x * scale.astype(x.dtype)


class DropPath(nn.Module):
  """Stochastic depth: drops a residual branch for whole examples, scaling the kept ones.

  The mask comes from the 'dropout' RNG, which the train step folds from its own key, so a run
  draws the same masks however often it was resumed.
  """
  rate: float = 0.0
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


def add_residual(x: jax.Array, branch: jax.Array, stride: int, layer_scale_init: float,
                 drop_path: ModuleDef) -> jax.Array:
  """A block's end: layer scale (when its init is set), then the shortcut when the block keeps
  resolution and width, the branch dropped by stochastic depth. Called from a block's compact
  `__call__`, so the modules it makes belong to that block."""
  if layer_scale_init:
    branch = LayerScale(layer_scale_init, name='layer_scale')(branch)
  if stride == 1 and branch.shape[-1] == x.shape[-1]:
    return drop_path(name='drop_path')(branch) + x
  return branch
