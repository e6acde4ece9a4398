"""Published MobileNet weights as our parameters and batch statistics.

The reference networks list their layers in the same order as ours (stem, then per block
expand, depthwise, SE, project, then the head), so a conversion pairs the i-th weight-carrying
layer of each and checks every shape; it needs no table of names. Each source is first put in
one neutral form, our layouts: conv kernels HWIO (a depthwise kernel (k, k, 1, C)), batch norm
as scale / bias / mean / var.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop.sources import SOURCES

Layer = tuple[str, dict[str, np.ndarray]]   # (source name, {'kernel', 'bias', 'scale', ...})


def torch_layers(state_dict: Mapping[str, Any]) -> list[Layer]:
  """A torchvision or timm state_dict's layers: conv OIHW -> HWIO, linear (out, in) ->
  (1, 1, in, out), timm's layer scale `gamma` and RMSNorm `weight` (V5) as our 'scale'."""
  grouped: dict[str, dict[str, np.ndarray]] = {}
  for key, value in state_dict.items():
    module, _, name = key.rpartition('.')
    if name != 'num_batches_tracked':
      array = value.detach().cpu().numpy() if hasattr(value, 'detach') else np.asarray(value)
      grouped.setdefault(module, {})[name] = array
  layers = []
  for module, tensors in grouped.items():
    if 'running_mean' in tensors:
      layer = {'scale': tensors['weight'], 'bias': tensors['bias'],
               'mean': tensors['running_mean'], 'var': tensors['running_var']}
    elif set(tensors) == {'gamma'}:
      layer = {'scale': tensors['gamma']}
    elif set(tensors) == {'weight'} and tensors['weight'].ndim == 1:  # RmsNorm2d
      layer = {'scale': tensors['weight']}
    else:
      weight = tensors['weight']
      if weight.ndim == 2:
        weight = weight[:, :, None, None]
      layer = {'kernel': weight.transpose(2, 3, 1, 0)}
      if 'bias' in tensors:
        layer['bias'] = tensors['bias']
    layers.append((module, layer))
  return layers


# timm's module names in call order. A safetensors file stores its tensors sorted by name, so
# the order the conversion pairs layers by is rebuilt from the names: the top level, then per
# block kind (told apart by a module only that kind has) the order of its convolutions, each
# batch norm `bnK` right after the K-th of them, then the parts inside a module (also inside
# V5's top-level modules: the stem's conv and norm, the MSFA's FFN and norm).
_TIMM_TOP = ('conv_stem', 'bn1', 'blocks', 'msfa', 'conv_head', 'bn2', 'norm_head', 'classifier')
_TIMM_BLOCKS = (
    ('conv_exp', ('conv_exp', 'se', 'conv_pwl')),                     # EdgeResidual (FusedIB)
    ('conv_pwl', ('conv_pw', 'conv_dw', 'se', 'conv_pwl')),           # InvertedResidual
    ('conv_dw', ('conv_dw', 'se', 'conv_pw')),                        # DepthwiseSeparableConv
    ('conv', ('conv',)),                                              # ConvBnAct
    ('pw_proj', ('dw_start', 'pw_exp', 'dw_mid', 'se', 'pw_proj', 'dw_end', 'layer_scale')),
    ('attn', ('norm', 'attn', 'layer_scale')))                        # MobileAttention
_TIMM_INNER = ('ffn', 'pw_exp', 'pw_proj', 'conv_reduce', 'conv_expand', 'query', 'key', 'value',
               'output', 'down_conv', 'norm', 'proj', 'conv', 'bn')


def timm_call_order(layers: list[Layer]) -> list[Layer]:
  """timm's layers in the order its model calls them, whatever order the file had."""
  modules = [name.split('.') for name, _ in layers]

  def rank(parts: list[str]) -> tuple:
    if parts[0] != 'blocks':
      return (_TIMM_TOP.index(parts[0]), tuple(_TIMM_INNER.index(p) for p in parts[1:]))
    siblings = {m[3] for m in modules if m[:3] == parts[:3]}
    convs = next(order for marker, order in _TIMM_BLOCKS if marker in siblings)
    name = parts[3]
    if name.startswith('bn'):  # after the K-th convolution (SE is not one)
      position = convs.index([c for c in convs if c != 'se'][int(name[2:]) - 1]) + 0.5
    else:
      position = convs.index(name)
    return (_TIMM_TOP.index('blocks'), int(parts[1]), int(parts[2]), position,
            tuple(_TIMM_INNER.index(p) for p in parts[4:]))

  ranks = []
  for name, parts in zip((name for name, _ in layers), modules):
    try:
      ranks.append(rank(parts))
    except (ValueError, StopIteration, IndexError):
      raise ConfigError(f'layer {name} is not one of timm\'s MobileNet layers') from None
  return [layer for _, layer in sorted(zip(ranks, layers), key=lambda pair: pair[0])]


def keras_layers(model) -> list[Layer]:
  """A Keras model's layers with weights: depthwise (k, k, C, 1) -> (k, k, 1, C), dense
  (in, out) -> (1, 1, in, out); batch norm gamma/beta/moving mean/variance."""
  layers = []
  for layer in model.layers:
    weights = [np.asarray(w) for w in layer.get_weights()]
    if not weights:
      continue
    kind = type(layer).__name__
    if kind == 'BatchNormalization':
      values = dict(zip(('scale', 'bias', 'mean', 'var'), weights))
    elif kind in ('Conv2D', 'DepthwiseConv2D', 'Dense'):
      kernel = weights[0]
      if kind == 'DepthwiseConv2D':
        kernel = kernel.transpose(0, 1, 3, 2)
      elif kind == 'Dense':
        kernel = kernel[None, None]
      values = {'kernel': kernel, **({'bias': weights[1]} if len(weights) > 1 else {})}
    else:
      raise ConfigError(f'Keras layer {layer.name} ({kind}) has no counterpart here')
    layers.append((layer.name, values))
  return layers


def keras_model(family: str, width: float, minimalistic: bool, classes: int = 1000,
                image_size: int = 224):
  """The Keras application of our family (random weights), with logits out and no rescaling."""
  import os  # pylint: disable=g-import-not-at-top
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  import keras  # pylint: disable=g-import-not-at-top
  build = getattr(keras.applications, SOURCES['keras'].builders[family])
  kwargs = {'alpha': width, 'weights': None, 'classes': classes,
            'classifier_activation': None, 'input_shape': (image_size, image_size, 3)}
  if family.startswith('v3'):
    kwargs.update(minimalistic=minimalistic, include_preprocessing=False)
  return build(**kwargs)


def _our_layers(model: nn.Module, image_size: int) -> tuple[list[tuple[str, ...]], dict]:
  """Paths of our modules that hold weights (a 'kernel', or a batch norm's 'scale') in the
  order they are called, and the model's abstract variables."""
  paths = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == '__call__' and any(
        module.has_variable('params', leaf) for leaf in ('kernel', 'scale')):
      paths.append(tuple(module.path))
    return out

  with nn.intercept_methods(record):
    abstract = jax.eval_shape(model.init, jax.random.key(0),
                              jnp.zeros((1, image_size, image_size, 3)))
  return list(dict.fromkeys(paths)), abstract


def assign(layers: list[Layer], model: nn.Module, image_size: int) -> dict:
  """{'params', 'batch_stats'} of `model`, filled from a source's layers in order; raises
  ConfigError on any mismatch."""
  ours, abstract_variables = _our_layers(model, image_size)
  if len(layers) != len(ours):
    raise ConfigError(f'the weights have {len(layers)} layers, the model {len(ours)}: not the '
                      'same architecture')
  expected = {('params', *k): v for k, v in
              traverse_util.flatten_dict(abstract_variables['params']).items()}
  expected.update({('batch_stats', *k): v for k, v in
                   traverse_util.flatten_dict(abstract_variables.get('batch_stats', {})).items()})
  filled = {}
  for (name, tensors), path in zip(layers, ours):
    for leaf, value in tensors.items():
      key = ('batch_stats' if leaf in ('mean', 'var') else 'params', *path, leaf)
      target = expected.get(key)
      if target is not None and leaf == 'kernel' and len(target.shape) == 2:
        value = value.reshape(value.shape[-2:])  # a 1x1 conv as our dense layer
      if target is None or tuple(target.shape) != value.shape:
        raise ConfigError(f'layer {name} does not fit {"/".join(path)}/{leaf}: {value.shape} '
                          f'against {None if target is None else tuple(target.shape)}')
      filled[key] = jnp.asarray(value, target.dtype)
  missing = sorted('/'.join(k) for k in set(expected) - set(filled))
  if missing:
    raise ConfigError(f'the weights have nothing for {missing}')
  flat = {'params': {}, 'batch_stats': {}}
  for (collection, *path), value in filled.items():
    flat[collection][tuple(path)] = value
  return {c: traverse_util.unflatten_dict(v) for c, v in flat.items()}


def assign_backbone(layers: list[Layer], model: nn.Module, image_size: int) -> dict:
  """`assign` for a `features_only` model: from a source's layers of the body alone, or of the
  whole network, all checked against the whole network, then the head's variables dropped."""
  body = len(_our_layers(model, image_size)[0])
  if len(layers) == body:
    return assign(layers, model, image_size)
  if 'kernel' not in layers[-1][1]:  # no classifier: a body, but not this one
    raise ConfigError(f'the weights have {len(layers)} layers, the backbone {body}: not the '
                      'same architecture')
  whole = model.clone(features_only=False, num_classes=layers[-1][1]['kernel'].shape[-1])
  variables = assign(layers, whole, image_size)
  return backbone_variables(variables, model, image_size)


def backbone_variables(variables: dict, model: nn.Module, image_size: int) -> dict:
  """The variables of a whole network that a `features_only` `model` has (its body's)."""
  abstract = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1, image_size, image_size, 3)))
  return {collection: {name: variables[collection][name] for name in tree}
          for collection, tree in abstract.items()}
