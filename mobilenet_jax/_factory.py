"""The machinery of the public API (`import mobilenet_jax as mnj`; `__init__` re-exports it): the
models by name, with their weights or as backbones, and the preprocessing their weights expect.

Names are those of `--config=configs/FAMILY.py:VARIANTS`: 'v3_large', 'v3_large:minimalistic',
'v4_conv_small:fashion_mnist'; `list_models()` lists each config and each variant it accepts.
Weights: None (a fresh init from `config.seed`), 'timm:PATH', 'torchvision:PATH' or 'keras:PATH'
(set up as `--config.init_from` sets them up: `pretrained.configure`), or a run directory of
ours (its config.json and the raw weights of its latest checkpoint, as `experiments.evaluate`
restores them).
Overrides: keyword arguments name config fields. A plain name is a field of `config.model`
(`width_multiplier=0.5`, `dtype='bfloat16'`), the fields a model factory varies, as timm's
keyword arguments go to the model, or else of the config's root (`seed=1`; `name` is the
model's); a dotted name is a path from the root, as a `--config.` flag names it
(`**{'input.image_size': 160}`).
"""

import difflib
import fnmatch
import functools
import importlib
import os
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mobilenet_jax import train
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop import pretrained, weight_import
from mobilenet_jax.interop.sources import SOURCES
from mobilenet_jax.models import architecture, registry
from mobilenet_jax.train import workdir as run_dir


@functools.cache
def _families() -> tuple[str, ...]:
  """The config files of `configs/` (each has a `get_config`), by name."""
  configs = importlib.import_module('configs')
  return tuple(sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
                      if not m.ispkg and m.name != 'common'))


@functools.cache
def _all_names() -> tuple[str, ...]:
  # A variant is listed for a family when the family's config accepts it (each config says which
  # of the shared variants fit its table); combinations ('a,b') are accepted but not listed.
  variants = importlib.import_module('configs.common').VARIANTS
  names = []
  for family in _families():
    get_config = importlib.import_module(f'configs.{family}').get_config
    names.append(family)
    for variant in variants:
      try:
        get_config(variant)
      except ConfigError:
        continue
      names.append(f'{family}:{variant}')
  return tuple(names)


def list_models(pattern: str = '*') -> list[str]:
  """Every config and variant whose name matches the shell-style `pattern`, as `create_model`
  takes them: 'v3_large', 'v3_large:minimalistic', ..."""
  return [name for name in _all_names() if fnmatch.fnmatchcase(name, pattern)]


def _is_run(weights: Any) -> bool:
  return isinstance(weights, (str, os.PathLike)) and os.path.isdir(weights)


def _override(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
  for key, value in overrides.items():
    path = key.split('.') if '.' in key or key not in config.model else ['model', key]
    if path == [key] and key not in config:  # a plain name that is neither: name the model's
      path = ['model', key]
    section = config
    for i, part in enumerate(path):
      where = '.'.join(path[:i]) or 'the config'
      if not isinstance(section, ml_collections.ConfigDict) or part not in section:
        fields = list(section.keys()) if isinstance(section, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, fields, n=1)
        hint = f'; did you mean {close[0]!r}?' if close else ''
        raise ConfigError(f'override {key}={value!r} is not allowed: {where} has no field '
                          f'{part!r}{hint} (a plain name is a field of the model or of the '
                          "config's root, a dotted one a path from the root: 'input.image_size')")
      if i + 1 < len(path):
        section = section[part]
    try:
      section[path[-1]] = value
    except (TypeError, ValueError) as error:
      raise ConfigError(f'override {key}={value!r} is not allowed: '
                        + ' '.join(str(error).split())) from None


def get_config(name: str, weights: str | None = None, num_classes: int | None = None,
               **overrides) -> ml_collections.ConfigDict:
  """The config `create_model` builds from: the named config (a run's own for a run directory),
  the overrides, and the fields the weights imply; raises ConfigError for a bad argument."""
  family, _, variants = str(name).partition(':')
  if family not in _families():
    raise ConfigError(f'model {name!r} is not known; choose a family of '
                      f'{", ".join(_families())} (mobilenet_jax.list_models() lists variants)')
  if _is_run(weights):
    config = run_dir.read_config(os.fspath(weights))
    if config.family != family or variants and config.name != name:
      raise ConfigError(f'weights={weights!r} is a run of {config.name}, not of {name}')
  else:
    config = importlib.import_module(f'configs.{family}').get_config(variants or None)
  _override(config, overrides)
  if num_classes is not None:
    config.model.num_classes = num_classes
  if weights is not None and not _is_run(weights):
    source, _, path = str(weights).partition(':')
    if source not in SOURCES or not path:
      raise ConfigError(f'weights={weights!r} is not allowed; give None, a run directory or '
                        + ', '.join(f'{s}:PATH' for s in SOURCES))
    config.init_from = str(weights)
    for line in pretrained.configure(config):
      print(line, flush=True)
  return config


def _images(config: ml_collections.ConfigDict) -> jax.Array:
  return jnp.zeros((1, config.input.image_size, config.input.image_size, 3), jnp.float32)


def _init(module, config: ml_collections.ConfigDict) -> dict:
  variables = jax.jit(functools.partial(module.init, train=False))(
      jax.random.key(config.seed), _images(config))
  return dict(variables)


def _restored(workdir: str, module, config: ml_collections.ConfigDict) -> dict:
  """The raw weights of a run's latest checkpoint, checked against `module`'s shapes."""
  variables = jax.device_get(train.restore_latest_run(workdir).state.variables('raw'))
  whole = module.clone(features_only=False, num_classes=config.model.num_classes)
  expected = jax.eval_shape(functools.partial(whole.init, train=False), jax.random.key(0),
                            _images(config))
  theirs = variables['params']['classifier']['kernel'].shape[-1]
  if theirs != config.model.num_classes:
    variables = pretrained.with_classifier(variables, _init(whole, config))
  shapes = jax.tree.map(np.shape, variables)
  if shapes != jax.tree.map(lambda a: a.shape, dict(expected)):
    raise ConfigError(f'weights={workdir!r}: the overrides change the architecture the run '
                      'trained; its weights do not fit')
  return variables


def create_model(name: str, weights: str | None = None, num_classes: int | None = None, *,
                 features_only: bool = False, out_indices: Sequence[int] | None = None,
                 **overrides) -> tuple[Any, dict]:
  """`(module, variables)` of a named model, ready for `module.apply(variables, images,
  train=False)` on images from `eval_transform`.

  With `features_only`, a backbone: `apply` returns the feature maps `out_indices` picks (all by
  default; `feature_info` says each one's channels and stride), timm's names and maps.
  """
  config = get_config(name, weights, num_classes, **overrides)
  module = registry.create_model(config.model)
  architecture.check_image_size(module.architecture, config.input.image_size)
  if features_only:
    indices = range(len(architecture.features(module.architecture))) if out_indices is None \
        else out_indices
    module = module.clone(features_only=True,
                          out_indices=architecture.check_out_indices(module.architecture, indices))
  size = config.input.image_size
  if weights is None:
    variables = _init(module, config)
  elif _is_run(weights):
    variables = _restored(os.fspath(weights), module, config)
    if features_only:
      variables = weight_import.backbone_variables(variables, module, size)
  else:
    variables = pretrained.read(config, module)
    if not features_only:
      theirs = variables['params']['classifier']['kernel'].shape[-1]
      if theirs != config.model.num_classes:
        variables = pretrained.with_classifier(variables, _init(module, config))
  return module, variables


def feature_info(name: str, **overrides) -> list[dict[str, int]]:
  """Per out index of `create_model(name, features_only=True, **overrides)`: the feature map's
  channels, stride and the index of the block it is the output of."""
  config = get_config(name, **overrides)
  arch = architecture.resolve(config.model)
  return [{'index': i, 'channels': f.channels, 'stride': f.stride, 'block': f.layer}
          for i, f in enumerate(architecture.features(arch))]


def eval_transform(name_or_config: str | ml_collections.ConfigDict, weights: str | None = None,
                   **overrides) -> Callable[[Any], np.ndarray]:
  """The evaluation preprocessing of a model with those weights (its config's resize, central
  crop and normalization): a function from a uint8 HxWx3 image or NxHxWx3 batch to float32
  NHWC, ready for `apply`."""
  config = name_or_config if isinstance(name_or_config, ml_collections.ConfigDict) \
      else get_config(name_or_config, weights, **overrides)
  fields = config.input
  from mobilenet_jax.data import preprocessing  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def transform(images: Any) -> np.ndarray:
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
      raise ConfigError(f'images of shape {array.shape} and dtype {array.dtype} are not allowed; '
                        'give uint8 RGB, HxWx3 or NxHxWx3')
    # eval_image reads encoded images, as the eval pipeline gives them; PNG is lossless, so the
    # pixels it decodes are the array's and the result is the pipeline's own.
    out = [preprocessing.normalize(
        preprocessing.eval_image(tf.io.encode_png(image), size=fields.image_size,
                                 style=fields.preprocessing, crop_fraction=fields.crop_fraction,
                                 interpolation=fields.interpolation), fields.mean, fields.std)
           for image in array.reshape((-1, *array.shape[-3:]))]
    return np.stack([o.numpy() for o in out]).astype(np.float32)

  return transform
