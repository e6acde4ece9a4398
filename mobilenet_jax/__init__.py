"""MobileNet V1-V4 in JAX/Flax, built from architecture tables.

  import mobilenet_jax as mnj
  mnj.list_models('v4*')
  module, variables = mnj.create_model('v4_conv_small', weights='timm:model.safetensors')
  logits = module.apply(variables, mnj.eval_transform('v4_conv_small', 'timm:...')(image))
  backbone, variables = mnj.create_model('v2', features_only=True, out_indices=(1, 2, 3, 4))

docs/python_api.md says more; the machinery is in `_factory.py`.
"""

import importlib

__all__ = ['create_model', 'eval_transform', 'feature_info', 'get_config', 'list_models']


def __getattr__(name: str):
  # Loaded on first use: the configs and the entry points import `mobilenet_jax.errors` before
  # tcmalloc is preloaded (experiments/cli.py), and must not load JAX or TensorFlow with it.
  if name in __all__:
    return getattr(importlib.import_module('mobilenet_jax._factory'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(__all__)
