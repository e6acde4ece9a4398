"""TFDS builders that are ready to read, or a fast, clear error saying how to get the data.

A dataset is a TFDS name or `folder:PATH`, a folder of class subfolders prepared by `folders`.

TFDS's own `fashion_mnist` builder downloads its files and checks their checksums; the Debian
package `dataset-fashion-mnist` ships the same images re-gzipped (other checksums), and offline
the download retries for minutes. So when the IDX files are on disk, an unregistered subclass of
TFDS's builder prepares the identical `fashion_mnist` dataset from them, once, into `data_dir`;
from then on the stock builder reads it. TFDS's installed files are not touched. Preparing (or
downloading) says so in one line, in place of TFDS's progress bars.
"""

import contextlib
import io
import os
import time
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds
from tensorflow_datasets.core import naming
from tensorflow_datasets.image_classification import mnist

from mobilenet_jax import errors
from mobilenet_jax.data import folders, records
from mobilenet_jax.errors import ConfigError, DatasetUnavailable

IDX_FILES = {
    'train_data': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_data': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}


class _FashionMNISTFromIDX(mnist.FashionMNIST, skip_registration=True):
  """TFDS's Fashion-MNIST, prepared from local IDX files instead of a download."""
  name = 'fashion_mnist'

  def __init__(self, *, idx_dir: str, **kwargs):
    self._idx_dir = idx_dir
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    files = dl_manager.extract(
        {key: os.path.join(self._idx_dir, name) for key, name in IDX_FILES.items()})
    return [
        tfds.core.SplitGenerator(name=split, gen_kwargs=dict(
            num_examples=count, data_path=files[f'{prefix}_data'],
            label_path=files[f'{prefix}_labels']))
        for split, prefix, count in (('train', 'train', 60_000), ('test', 'test', 10_000))
    ]


def _has_idx_files(folder: str | None) -> bool:
  return bool(folder) and all(os.path.exists(os.path.join(folder, f)) for f in IDX_FILES.values())


def check_known(name: str) -> None:
  """Raises ConfigError unless `name` is `folder:PATH` or names a TFDS dataset (with its config
  and version, as `tfds.builder` takes them); looks nothing up on the network."""
  if folders.path_of(name) is not None:
    return  # the folder is checked by `configure`
  try:
    parsed, _ = naming.parse_builder_name_kwargs(name)
  except ValueError:
    raise ConfigError(f'dataset={name!r} cannot be parsed; give a TFDS name (NAME, NAME/CONFIG '
                      'or NAME:VERSION, e.g. cifar10, imagenet2012:5.1.0) or folder:PATH for a '
                      'folder of class subfolders') from None
  if parsed.namespace:
    raise ConfigError(f'dataset={name!r}: community datasets ({parsed.namespace}:...) are not '
                      'supported; give a TFDS name (e.g. cifar10) or folder:PATH for a folder '
                      'of class subfolders') from None
  try:
    tfds.builder_cls(parsed.name)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(f'dataset={name!r} is not a TFDS dataset; pick an image-classification '
                      'dataset from `tfds.list_builders()`, e.g. imagenet2012, cifar10, '
                      'fashion_mnist, or give folder:PATH for a folder of class '
                      'subfolders') from None


def configure(config: Any) -> list[str]:
  """Sets the fields the data implies before the model is built: a folder dataset's
  `model.num_classes`, from its class subfolders. Returns a line for each change, to print once
  all is checked; raises ConfigError for a missing folder or fewer than two classes."""
  root = folders.path_of(config.dataset)
  if root is None:
    return []
  errors.check_range('folder_eval_fraction', config.folder_eval_fraction, 0, 1)
  errors.check_choice('folder_skip_bad_files', config.folder_skip_bad_files, (True, False))
  classes = folders.class_names(root)
  if config.model.num_classes == len(classes):
    return []
  was, config.model.num_classes = config.model.num_classes, len(classes)
  return [f'model.num_classes={len(classes)}: the class subfolders of {root} (was {was})']


def check_splits(config: Any, names) -> None:
  """Raises ConfigError unless the train and eval splits are among `names` (TFDS slices and
  sums of them, such as 'train[:90%]', name the splits they read); no names, no check (the
  builders of tfds.testing.mock_data list none)."""
  names = sorted(names)
  for field in ('train_split', 'eval_split'):
    read = [part.split('[')[0].strip() for part in str(config[field]).split('+')]
    if names and not set(read) <= set(names):
      raise ConfigError(f'{field}={config[field]!r} is not a split of {config.dataset}; it has: '
                        + ', '.join(names))


def load_builder(config: Any) -> tfds.core.DatasetBuilder:
  """The builder of `config.dataset`, prepared, with the config's splits checked; raises
  DatasetUnavailable within seconds."""
  root = folders.path_of(config.dataset)
  if root is not None:
    return _folder_builder(root, config)
  builder = _registered_builder(config)
  check_splits(config, builder.info.splits.keys())
  return builder


def _folder_builder(root: str, config: Any) -> tfds.core.DatasetBuilder:
  layout = folders.scan(root, config.folder_eval_fraction, config.folder_skip_bad_files)
  check_splits(config, layout.splits)  # before anything is written
  builder, skipped = folders.prepare(
      layout, config.data_dir, config.folder_skip_bad_files,
      announce=lambda: _one_line(f'preparing {config.dataset} (once)'))
  if skipped:
    print(f'{config.dataset}: left out {len(skipped)} files that are not images, the first '
          f'{skipped[0]!r} (folder_skip_bad_files)', flush=True)
  return builder


def _registered_builder(config: Any) -> tfds.core.DatasetBuilder:
  name, data_dir = config.dataset, config.data_dir
  builder = tfds.builder(name, data_dir=data_dir)
  if records.ready(builder):
    return builder
  if name == 'fashion_mnist' and _has_idx_files(config.fashion_mnist_dir):
    records.prepare(lambda: _FashionMNISTFromIDX(idx_dir=config.fashion_mnist_dir,
                                                 data_dir=data_dir),
                    name, announce=lambda: _one_line(
                        f'preparing {name} in {builder.data_dir_root} from the IDX files in '
                        f'{config.fashion_mnist_dir} (once)'),
                    download_dir=os.path.join(builder.data_dir_root, 'downloads'))
    return tfds.builder(name, data_dir=data_dir)
  if config.download:
    return records.prepare(lambda: tfds.builder(name, data_dir=data_dir), name,
                           tfds.download.DownloadConfig(manual_dir=config.manual_dir),
                           announce=lambda: _one_line(f'downloading and preparing {name} in '
                                                      f'{builder.data_dir_root} (once)'))
  stale = records.stale_format(builder)
  if stale:
    raise DatasetUnavailable(
        f'dataset {name!r} is prepared in {builder.data_dir} as {stale}, which is read only in '
        f'order; training reads by index from {records.FILE_FORMAT}: run once with '
        '--config.download=True to prepare it again (from TFDS\'s downloads or manual_dir), or '
        f'convert it: tfds convert_format --dataset_version_dir={builder.data_dir} '
        f'--out_file_format={records.FILE_FORMAT} (needs apache-beam)')
  how = {
      'fashion_mnist': f'install the IDX files (`apt-get install dataset-fashion-mnist`) or point '
                       f'--config.fashion_mnist_dir at a folder holding {", ".join(IDX_FILES.values())}',
      'imagenet2012': 'put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in a folder and '
                      'run with --config.manual_dir=FOLDER --config.download=True',
  }.get(name, 'with internet access, run with --config.download=True (or `tfds build '
        f'{name}`)')
  raise DatasetUnavailable(f'dataset {name!r} is not prepared in {builder.data_dir_root}: {how}')


@contextlib.contextmanager
def _one_line(what: str) -> Iterator[None]:
  """`what ...`, then `done in N s` on the same line: TFDS's progress bars (a dozen of them,
  redrawn, in the quick start's first run) are turned off for this process, and the lines it
  prints before and after preparing go nowhere."""
  tfds.disable_progress_bar()
  print(f'{what} ...', end=' ', flush=True)
  start = time.perf_counter()
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  except BaseException:
    print('failed', flush=True)
    raise
  print(f'done in {time.perf_counter() - start:.0f} s', flush=True)


def split_size(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Examples in a split, from the dataset's metadata, or counted where there is none (mocks)."""
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError):
    return int(builder.as_dataset(split=split, decoders={'image': tfds.decode.SkipDecoding()})
               .reduce(0, lambda count, _: count + 1))
