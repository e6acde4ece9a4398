"""Parameters and multiply-adds per layer, counted from the built model's own layers.

Every layer with a weight `kernel` (convolutions, depthwise convolutions, dense layers) costs
(output elements per image) x (kernel elements per output channel) multiply-adds: that is
H*W*k*k*C_in*C_out for a conv, H*W*k*k*C for a depthwise conv and C_in*C_out for a dense layer;
attention adds its two matmuls (a module's `attention_madds`). Batch norm, activations, pooling,
softmax and the SE rescale are not counted, as in the papers.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LayerCost:
  name: str                    # the network's top-level module (one block, head or classifier)
  output_shape: tuple[int, ...]
  params: int                  # trainable parameters (batch-norm statistics excluded)
  madds: int                   # multiply-adds for one image


def count_params(params) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def layer_costs(model: nn.Module, image_size: int, in_channels: int = 3) -> list[LayerCost]:
  """Per top-level layer costs of `model` on one image, in call order; nothing is compiled."""
  shapes: dict[str, tuple[int, ...]] = {}
  madds: dict[str, int] = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name != '__call__' or len(module.path) == 0:
      return out
    top = module.path[0]
    if len(module.path) == 1:
      shapes[top] = tuple(out.shape[1:])
    if module.has_variable('params', 'kernel'):
      kernel = module.get_variable('params', 'kernel')
      per_output = math.prod(kernel.shape) // kernel.shape[-1]
      madds[top] = madds.get(top, 0) + math.prod(out.shape[1:]) * per_output
    if hasattr(module, 'attention_madds'):
      madds[top] = madds.get(top, 0) + module.attention_madds(args[0].shape)
    return out

  images = jnp.zeros((1, image_size, image_size, in_channels), jnp.float32)
  with nn.intercept_methods(record):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  return [LayerCost(name, shape, count_params(variables['params'].get(name, {})),
                    madds.get(name, 0))
          for name, shape in shapes.items()]


def totals(costs: list[LayerCost]) -> tuple[int, int]:
  """(params, madds) of a whole network."""
  return sum(c.params for c in costs), sum(c.madds for c in costs)


def model_totals(model: nn.Module, image_size: int) -> tuple[int, int]:
  """(params, madds) of `model` on RGB images of `image_size` px."""
  return totals(layer_costs(model, image_size))
