"""Classifying image files with a run's weights or published ones: `experiments.predict`.

The model is compiled once for a batch of `batch_size`; the last batch is padded to it. Images are
read and preprocessed as the eval split is (`preprocessing.eval_image` on the file's bytes, then
`normalize`), so a prediction is what `experiments.evaluate` measured.
"""

import dataclasses
import importlib.util
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mobilenet_jax import train
from mobilenet_jax.data import preprocessing
from mobilenet_jax.interop import pretrained
from mobilenet_jax.models import registry
from mobilenet_jax.train import workdir as run_dir

# timm ships WordNet's words for each synset; TFDS ships the ImageNet synset ids only.
_TIMM_LEMMAS = os.path.join('data', '_info', 'imagenet_synset_to_lemma.txt')


def image_paths(args: Sequence[str]) -> list[str]:
  """The files named, and those in the folders named (sorted, not recursive); a name that is
  neither stays in the list, to be reported when it is read."""
  paths = []
  for arg in args:
    if os.path.isdir(arg):
      paths += sorted(os.path.join(arg, name) for name in os.listdir(arg)
                      if not name.startswith('.') and os.path.isfile(os.path.join(arg, name)))
    else:
      paths.append(arg)
  return paths


def _imagenet_synsets() -> list[str]:
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common  # pylint: disable=g-import-not-at-top
  with open(imagenet_common.label_names_file()) as f:
    return [line.strip() for line in f if line.strip()]


def _with_words(names: list[str]) -> list[str]:
  """WordNet synset ids ('n01440764') with their words ('n01440764 (tench, Tinca tinca)') where
  timm is installed; TFDS ships the ids only."""
  spec = importlib.util.find_spec('timm')
  path = os.path.join(spec.submodule_search_locations[0], _TIMM_LEMMAS) if spec else ''
  if not path or not os.path.exists(path):
    return names
  with open(path) as f:
    words = dict(line.rstrip('\n').split('\t', 1) for line in f if '\t' in line)
  return [f'{n} ({words[n]})' if n in words else n for n in names]


def class_names(config: ml_collections.ConfigDict, num_classes: int,
                workdir: str | None = None) -> list[str]:
  """Names of the model's classes: a run's own (its results or config, where the run keeps
  them), else its dataset's in TFDS's metadata, ImageNet's for 1000 classes; else the indices."""
  for record in ((run_dir.read_json(os.path.join(workdir, run_dir.RESULTS_FILE)),
                  config.to_dict()) if workdir else ()):
    names = record.get('class_names')
    if names and len(names) == num_classes:
      return list(names)
  try:
    label = tfds.builder(config.dataset, data_dir=config.data_dir).info.features['label']
    if label.num_classes == num_classes:
      return _with_words(list(label.names))
  except Exception:  # pylint: disable=broad-exception-caught  # a dataset TFDS cannot describe
    pass
  if num_classes == 1000:  # published weights, whatever the config's dataset
    return _with_words(_imagenet_synsets())
  return [str(i) for i in range(num_classes)]


@dataclasses.dataclass
class Predictor:
  """A model with its variables, compiled for batches of `batch_size`."""
  config: ml_collections.ConfigDict
  apply: Any
  variables: dict
  names: list[str]
  batch_size: int

  @classmethod
  def load(cls, config: ml_collections.ConfigDict | None, workdir: str | None,
           init_from: str | None, batch_size: int) -> 'Predictor':
    if workdir:
      run = train.restore_latest_run(workdir, config)
      config, model = run.config, run.setup.model
      variables = jax.device_get(run.state.variables('raw'))
    else:
      config.init_from = init_from
      for line in pretrained.configure(config):
        print(line, flush=True)
      model = registry.create_model(config.model)
      variables = pretrained.read(config, model)
      model = model.clone(num_classes=variables['params']['classifier']['kernel'].shape[-1])
    names = class_names(config, model.num_classes, workdir)
    apply = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, x, train=False)))
    return cls(config, apply, variables, names, batch_size)

  def _image(self, path: str) -> np.ndarray:
    fields = self.config.input
    image = preprocessing.eval_image(tf.io.read_file(path), size=fields.image_size,
                                     style=fields.preprocessing,
                                     crop_fraction=fields.crop_fraction,
                                     interpolation=fields.interpolation)
    return preprocessing.normalize(image, fields.mean, fields.std).numpy()

  def classify(self, paths: Sequence[str], top: int) -> Iterator[dict]:
    """Per path in order: {'path', 'top': [{'class', 'name', 'probability'}, ...]}, or
    {'path', 'error'} for an image that cannot be read."""
    size = self.config.input.image_size
    pending: list[tuple[str, np.ndarray | None, str]] = []

    def flush() -> Iterator[dict]:
      good = [image for _, image, _ in pending if image is not None]
      probabilities = np.zeros((0, len(self.names)))
      if good:
        batch = np.zeros((self.batch_size, size, size, 3), np.float32)
        batch[:len(good)] = good
        probabilities = np.asarray(self.apply(self.variables, batch))[:len(good)]
      rows = iter(probabilities)
      for path, image, error in pending:
        if image is None:
          yield {'path': path, 'error': error}
          continue
        p = next(rows)
        best = np.argsort(-p, kind='stable')[:top]
        yield {'path': path, 'top': [{'class': int(c), 'name': self.names[c],
                                      'probability': float(p[c])} for c in best]}
      pending.clear()

    for path in paths:
      try:
        pending.append((path, self._image(path), ''))
      except tf.errors.OpError as error:
        reason = 'no such file' if not os.path.isfile(path) else \
            f'cannot be read as an image ({error.message.splitlines()[0]})'
        pending.append((path, None, reason))
      if sum(image is not None for _, image, _ in pending) == self.batch_size:
        yield from flush()
    yield from flush()

