"""TFDS builders that are ready to read, or a fast, clear error saying how to get the data.

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
from tensorflow_datasets.image_classification import mnist

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
  try:
    tfds.builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(f'dataset={name!r} is not a TFDS dataset; pick an image-classification '
                      'dataset from `tfds.list_builders()`, e.g. imagenet2012, cifar10, '
                      'fashion_mnist') from None


def load_builder(config: Any) -> tfds.core.DatasetBuilder:
  """The builder of `config.dataset`, prepared; raises DatasetUnavailable within seconds."""
  name, data_dir = config.dataset, config.data_dir
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  if name == 'fashion_mnist' and _has_idx_files(config.fashion_mnist_dir):
    idx_builder = _FashionMNISTFromIDX(idx_dir=config.fashion_mnist_dir, data_dir=data_dir)
    with _one_line(f'preparing {name} in {builder.data_dir_root} from the IDX files in '
                   f'{config.fashion_mnist_dir} (once)'):
      idx_builder.download_and_prepare(
          download_dir=os.path.join(builder.data_dir_root, 'downloads'))
    return tfds.builder(name, data_dir=data_dir)
  if config.download:
    with _one_line(f'downloading and preparing {name} in {builder.data_dir_root} (once)'):
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=config.manual_dir))
    return builder
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
