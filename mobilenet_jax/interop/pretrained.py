"""Starting from published weights: `config.init_from = 'torchvision:PATH'`, `'keras:PATH'` or
`'timm:PATH'`.

- torchvision: a `state_dict` file of `mobilenet_v2`, `mobilenet_v3_large` or
  `mobilenet_v3_small`. Inputs ImageNet-normalized (the configs' default input.mean/std).
- timm: a `state_dict` (`.pth`/`.bin` torch file, or `.safetensors`, read without torch) of
  `mobilenetv1_*`, `mobilenetv2_*`, `mobilenetv3_large_*` / `_small_*`, `mobilenetv4_*` or
  `mobilenetv5_*` (Gemma 3n's encoder: `mobilenetv5_300m.gemma3n`, no classifier).
  Inputs ImageNet-normalized; evaluated as timm does (bicubic, crop fraction 0.95 for V4);
  V5's inputs as its configs in timm (base [-1, 1], 300M [0, 1], no crop).
- keras: a weights file of the Keras application `MobileNet`, `MobileNetV2`,
  `MobileNetV3Large` or `MobileNetV3Small` with 1000 classes (`:minimalistic` configs for the
  minimalistic V3). Inputs scaled to [-1, 1], as Keras's `preprocess_input`.
The weights must be of the config's family and width. The model and input fields that must
match them (padding convention, batch-norm epsilon, input scaling) are set from the source
before the model is built, and the classifier is re-initialized when the number of classes
differs.
"""

import os
from typing import Any

import ml_collections
import numpy as np

from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop import weight_import
from mobilenet_jax.interop.sources import SOURCES


def _parse(spec: str) -> tuple[str, str]:
  source, _, path = spec.partition(':')
  if source not in SOURCES or not path:
    raise ConfigError(f'init_from={spec!r} is not allowed; use one of '
                      f'{", ".join(s + ":PATH" for s in SOURCES)}')
  if not os.path.exists(path):
    raise ConfigError(f'init_from={spec!r} is not allowed; no file {path}')
  return source, path


def configure(config: ml_collections.ConfigDict) -> list[str]:
  """Checks `config.init_from` and sets the model and input fields its weights need (before
  the model is built); returns a line for each field it changed, to print once all is checked."""
  if not config.init_from:
    return []
  source_name, _ = _parse(config.init_from)
  source = SOURCES[source_name]
  if config.family not in source.builders:
    raise ConfigError(f'init_from={config.init_from!r} is not allowed for {config.family}: '
                      f'{source_name} has {", ".join(source.builders)}')
  changes = []
  for section, values in (('model', source.model_fields[config.family]),
                          ('input', source.input_fields[config.family])):
    for field, value in values.items():
      if tuple(np.atleast_1d(config[section][field])) != tuple(np.atleast_1d(value)):
        changes.append(f'init_from: {section}.{field}={value} (as the weights were trained; '
                       f'was {config[section][field]})')
        config[section][field] = value
  return changes


def read(config: ml_collections.ConfigDict, model) -> dict[str, Any]:
  """The weights of `config.init_from` as `model`'s variables, read and shape-checked; raises
  ConfigError for a file that cannot be read or does not fit. The classifier is the file's.

  A backbone (`model.features_only`) takes a file of the whole network, every layer checked
  against the whole network before the head is dropped, or one of the body alone (what timm's
  `features_only` models save)."""
  source, path = _parse(config.init_from)
  try:
    if source == 'timm' and path.endswith('.safetensors'):
      import safetensors.numpy  # pylint: disable=g-import-not-at-top
      layers = weight_import.torch_layers(safetensors.numpy.load_file(path))
    elif source in ('torchvision', 'timm'):
      import torch  # pylint: disable=g-import-not-at-top
      layers = weight_import.torch_layers(torch.load(path, map_location='cpu',
                                                     weights_only=True))
    else:
      reference = weight_import.keras_model(config.family, config.model.width_multiplier,
                                            'minimalistic' in config.variants)
      reference.load_weights(path)
      layers = weight_import.keras_layers(reference)
  except Exception as error:  # pylint: disable=broad-exception-caught
    # Not torch's advice to unpickle with weights_only=False: unsafe, and no help for a bad file.
    raise ConfigError(f'init_from={config.init_from!r} is not allowed; {path} cannot be read as '
                      f'{source} weights ({type(error).__name__})') from None
  if source == 'timm':
    layers = weight_import.timm_call_order(layers)
  size = config.input.image_size
  if getattr(model, 'features_only', False):
    return weight_import.assign_backbone(layers, model, size)
  # Weights without a classifier (an encoder's: Gemma 3n's V5) end with a norm, not a kernel.
  classes = layers[-1][1]['kernel'].shape[-1] if 'kernel' in layers[-1][1] else 0
  return weight_import.assign(layers, model.clone(num_classes=classes), size)


def with_classifier(imported: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
  """The imported weights, with the classifier of `variables` (our fresh init) where the two
  differ in classes (0: no classifier, an encoder's weights or model)."""
  def classes(params):
    return params['classifier']['kernel'].shape[-1] if 'classifier' in params else 0
  theirs, ours = classes(imported['params']), classes(variables['params'])
  if theirs == ours:
    return imported
  print(f'init_from: the classifier is re-initialized ({theirs} classes in the weights, {ours} '
        'here)', flush=True)
  params = {k: v for k, v in imported['params'].items() if k != 'classifier'}
  if ours:
    params['classifier'] = variables['params']['classifier']
  return {**imported, 'params': params}
