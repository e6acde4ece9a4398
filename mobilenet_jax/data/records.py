"""Datasets on disk in the format training reads by index: TFDS's array_record.

Training reads each record by its index (`input_pipeline`), which TFDS's `array_record` files
allow and its `tfrecord` files (read only in order) do not. Every dataset we prepare is written
as array_record. One prepared as tfrecord, by an earlier version of this project or by another
tool, is prepared again, once, where its source is at hand (saying so): re-preparing rereads the
source, where converting would need Apache Beam (TFDS's `convert_format`), which this project
does not install.
"""

import contextlib
from collections.abc import Callable

import tensorflow_datasets as tfds
from etils import epath

FILE_FORMAT = 'array_record'


def ready(builder: tfds.core.DatasetBuilder) -> bool:
  """Whether the dataset is prepared, and in the format read by index."""
  return builder.is_prepared() and FILE_FORMAT in {
      f.value for f in builder.info.available_file_formats()}


def stale_format(builder: tfds.core.DatasetBuilder) -> str | None:
  """The format of a dataset prepared only in formats read in order (tfrecord); else None."""
  return None if not builder.is_prepared() or ready(builder) else builder.info.file_format.value


def prepare(make: Callable[[], tfds.core.DatasetBuilder], name: str,
            download_config: tfds.download.DownloadConfig | None = None,
            announce: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
            **kwargs) -> tfds.core.DatasetBuilder:
  """The builder `make` returns, prepared in array_record. A dataset prepared in another format is
  deleted first, its source (TFDS's downloads, manual_dir, local files) kept, and prepared again
  by a new builder: TFDS fixes a builder's format once it has read the old one's metadata.
  `announce()` is the context the preparation itself runs in (datasets.py's one progress line)."""
  builder = make()
  stale = stale_format(builder)
  if stale:
    print(f'{name}: prepared in {builder.data_dir} as {stale}, which is read only in order; '
          f'preparing it again, once, as {FILE_FORMAT}, which training reads by index',
          flush=True)
    epath.Path(builder.data_dir).rmtree()
    builder = make()
  with announce():
    builder.download_and_prepare(download_config=download_config, file_format=FILE_FORMAT,
                                 **kwargs)
  return builder
