"""A folder of a researcher's own images as a TFDS dataset: `--config.dataset=folder:PATH`.

Two layouts, told apart by a `train` subfolder:
  PATH/train/<class>/*, PATH/val/<class>/*, ...  each subfolder of PATH is a split, named as it;
  PATH/<class>/*                                 one folder, split into `train` and `validation`
                                                 by `config.folder_eval_fraction`.
The one-folder split is stratified and needs no seed: in each class, the round(n * fraction)
files whose relative paths hash lowest (SHA-256) are held out (at least one, and at least one
left to train). So
the same folder always splits the same way, and an added image never moves another one between
the splits.

The images are written once, as they are (no re-encoding), into TFDS's array_record format
under `data_dir`, by a small builder of ours: TFDS's `ImageFolder` reads the files on every
pass and shuffles none of them by seed, while a prepared dataset is read by index like every
TFDS dataset (`input_pipeline`), with its seeded order and exact resume. The
prepared dataset is keyed by a fingerprint of the file list (relative paths and sizes), so a
changed folder is prepared anew rather than read stale.

Images are checked cheaply before anything is written: PIL reads each file's header, and a
file that is not an image TensorFlow decodes stops the preparation with one line naming the
first bad file and the count (or is left out with `config.folder_skip_bad_files`).
"""

import contextlib
import dataclasses
import hashlib
import os
import re
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mobilenet_jax.data import records
from mobilenet_jax.errors import ConfigError

PREFIX = 'folder:'
# The formats `tf.io.decode_image` reads, by PIL's names for them.
IMAGE_FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP')
TRAIN, HELD_OUT = 'train', 'validation'   # the splits of a one-folder layout
_SPLIT_NAME = re.compile(r'\w+')          # what TFDS accepts in its file names


def path_of(dataset: str) -> str | None:
  """PATH of `folder:PATH`; None for any other dataset name."""
  return dataset[len(PREFIX):] if dataset.startswith(PREFIX) else None


@dataclasses.dataclass(frozen=True)
class Layout:
  """A folder's images: the class names (label = index) and each split's (file, label) pairs."""
  root: str
  classes: tuple[str, ...]
  splits: dict[str, tuple[tuple[str, int], ...]]   # file paths relative to root, sorted
  fingerprint: str


def _subfolders(path: str) -> list[str]:
  return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith('.'))


def _split_folders(root: str) -> dict[str, str] | None:
  """{split: its folder} of a PATH/<split>/<class> layout; None for one folder of classes."""
  names = _subfolders(root)
  if TRAIN not in names:
    return None
  for name in names:
    if not _SPLIT_NAME.fullmatch(name) or name.lower() == 'all':
      raise ConfigError(f'dataset=folder:{root}: the split folder {name!r} cannot be a TFDS '
                        "split name; use letters, digits and '_' (and not 'all')")
  return {name: os.path.join(root, name) for name in names}


def _check_root(root: str) -> None:
  if not os.path.isdir(root):
    raise ConfigError(f'dataset=folder:{root}: no such folder; give a folder of class '
                      'subfolders (PATH/<class>/*, or PATH/train/<class>/* and PATH/val/...)')


def class_names(root: str) -> tuple[str, ...]:
  """The class names of a folder dataset, from its folders alone (cheap: no file is listed);
  raises ConfigError for a missing folder or fewer than two classes."""
  _check_root(root)
  splits = _split_folders(root)
  folders = splits.values() if splits else [root]
  classes = tuple(sorted({name for folder in folders for name in _subfolders(folder)}))
  where = os.path.join(root, TRAIN) if splits else root
  if not classes:
    raise ConfigError(f'dataset=folder:{root}: {where} holds no class subfolders; put each '
                      "class's images in a subfolder named after it")
  if len(classes) == 1:
    raise ConfigError(f'dataset=folder:{root}: only one class ({classes[0]!r}); a classifier '
                      'needs at least two class subfolders')
  return classes


def _files(folder: str) -> list[str]:
  """Every file under `folder`, hidden ones left out, as sorted paths relative to it."""
  found = []
  for parent, dirs, names in os.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith('.')]
    found += [os.path.relpath(os.path.join(parent, n), folder)
              for n in names if not n.startswith('.')]
  return sorted(found)


def _held_out(files: list[str], fraction: float) -> set[str]:
  """The stratified share of one class's files held out for validation (see the docstring): at
  least one of a class of two or more (a small folder still has a validation split), and at
  least one left to train."""
  count = min(max(int(round(len(files) * fraction)), 1 if fraction else 0), len(files) - 1)
  ranked = sorted(files, key=lambda f: hashlib.sha256(f.encode()).hexdigest())
  return set(ranked[:max(count, 0)])


def scan(root: str, eval_fraction: float, skip_bad_files: bool = False) -> Layout:
  """The folder's classes and splits; lists the files but opens none of them."""
  classes = class_names(root)
  labels = {name: i for i, name in enumerate(classes)}
  split_folders = _split_folders(root)
  splits: dict[str, list[tuple[str, int]]] = {}
  if split_folders:
    for split, folder in split_folders.items():
      splits[split] = [(os.path.join(split, name, f), labels[name])
                       for name in _subfolders(folder)
                       for f in _files(os.path.join(folder, name))]
  else:
    splits = {TRAIN: [], HELD_OUT: []}
    for name in classes:
      files = [os.path.join(name, f) for f in _files(os.path.join(root, name))]
      held_out = _held_out(files, eval_fraction)
      for f in files:
        splits[HELD_OUT if f in held_out else TRAIN].append((f, labels[name]))
  splits = {split: tuple(sorted(pairs)) for split, pairs in splits.items() if pairs}
  counts = np.bincount([label for pairs in splits.values() for _, label in pairs],
                       minlength=len(classes))
  if not counts.any():
    raise ConfigError(f'dataset=folder:{root}: its class folders hold no files')
  if not counts.all():
    raise ConfigError(f'dataset=folder:{root}: the class folder {classes[counts.argmin()]!r} '
                      'holds no files; add images or remove it')
  digest = hashlib.sha256(repr((bool(split_folders), eval_fraction, skip_bad_files)).encode())
  for split, pairs in splits.items():
    for path, label in pairs:
      digest.update(f'{split}\0{path}\0{label}\0{os.path.getsize(os.path.join(root, path))}\n'
                    .encode())
  return Layout(root, classes, splits, digest.hexdigest())


def _is_image(path: str) -> bool:
  """Whether PIL finds an image TensorFlow decodes, from the header (and PNG's checksums)."""
  try:
    with Image.open(path) as image:
      image.verify()
      return image.format in IMAGE_FORMATS
  except Exception:  # pylint: disable=broad-exception-caught
    return False  # PIL raises many kinds for a file it cannot read


def without_bad_files(layout: Layout, skip: bool) -> tuple[Layout, list[str]]:
  """`layout` with the files that are no decodable image left out, and those files; raises
  ConfigError naming the first and the count unless `skip`."""
  bad = sorted(path for pairs in layout.splits.values() for path, _ in pairs
               if not _is_image(os.path.join(layout.root, path)))
  if bad and not skip:
    raise ConfigError(
        f'dataset=folder:{layout.root}: {len(bad)} files are not images TensorFlow decodes '
        f'({"/".join(IMAGE_FORMATS)}), the first {os.path.join(layout.root, bad[0])!r}; remove '
        'them, or leave them out with --config.folder_skip_bad_files=True')
  drop = set(bad)
  splits = {split: tuple(p for p in pairs if p[0] not in drop)
            for split, pairs in layout.splits.items()}
  return dataclasses.replace(layout, splits={s: p for s, p in splits.items() if p}), bad


class FolderDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A scanned folder as a TFDS dataset: one builder config per fingerprint, so a changed folder
  gets a preparation of its own in `data_dir/folder_dataset/`."""
  name = 'folder_dataset'
  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, layout: Layout, **kwargs):
    self._layout = layout
    super().__init__(config=tfds.core.BuilderConfig(name=f'files_{layout.fingerprint[:16]}'),
                     **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'The images of {self._layout.root}.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(),   # the file's own bytes, decoded by the pipeline
            'label': tfds.features.ClassLabel(names=self._layout.classes),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(pairs) for split, pairs in self._layout.splits.items()}

  def _generate_examples(self, pairs):
    for path, label in pairs:
      yield path, {'image': os.path.join(self._layout.root, path), 'label': label,
                   'file_name': path}


def prepare(layout: Layout, data_dir: str | None, skip_bad_files: bool,
            announce: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
            ) -> tuple[FolderDataset, list[str]]:
  """The builder of a scanned folder, prepared on first use (its images checked first, the
  writing in the context `announce()`), and the files left out as bad ones (only with
  `skip_bad_files`)."""
  builder = FolderDataset(layout=layout, data_dir=data_dir)
  if records.ready(builder):
    return builder, []
  layout, bad = without_bad_files(layout, skip_bad_files)
  builder = records.prepare(lambda: FolderDataset(layout=layout, data_dir=data_dir),
                            f'{PREFIX}{layout.root}', announce=announce)
  return builder, bad
