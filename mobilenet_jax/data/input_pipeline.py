"""tf.data input: deterministic, resumable at any step, split across processes and devices.

An epoch's order and augmentation are pure functions of (seed, epoch): the records are read by
index from TFDS's array_record data source, in a permutation of the split that NumPy draws from
(seed, epoch), and each example draws its augmentation (crop, flip, RandAugment, random erasing)
from (seed, epoch, position in the epoch); Mixup and CutMix happen on the device, from (seed,
step). Each global batch is a run of positions of that one order; each process reads only its
own contiguous block of it, so a global batch holds the same images in the same places on one
host or several, and no host reads another's records. Resuming at step s starts epoch
s // steps_per_epoch at its batch by index arithmetic: no skipped record is read.

Why not grain, the library made for this: grain 0.2.18's per-index shuffle and threaded reads
through TFDS's per-record Python deserializer gave 282 images/s where the tf.data pipeline
before gave 11,600 (Fashion-MNIST, same machine); reading raw records in chunks and parsing them
in tf.data keeps tf.data's speed (docs/input_pipeline_order.md).
"""

import concurrent.futures
import dataclasses
import functools
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mobilenet_jax.data import augment, preprocessing


# Batches before an epoch's end at which the next epoch starts reading its first batch.
_EPOCH_LEAD_BATCHES = 50
# Records read in one Python call, and such calls at once: reading is I/O (and array_record's
# C++), so a few calls in flight keep tf.data's parsing and decoding threads fed.
_READ_CHUNK = 64
_READ_PARALLEL = 4


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """What the loop needs to know about the data."""
  num_classes: int
  num_train_examples: int
  num_eval_examples: int
  steps_per_epoch: int        # full global batches per epoch; the remainder is dropped
  num_eval_steps: int         # global batches covering the eval split, the last one padded


def describe(builder: tfds.core.DatasetBuilder, config: Any, split_size) -> InputSpec:
  num_train = split_size(builder, config.train_split)
  num_eval = split_size(builder, config.eval_split)
  return InputSpec(
      num_classes=builder.info.features['label'].num_classes,
      num_train_examples=num_train, num_eval_examples=num_eval,
      steps_per_epoch=max(num_train // config.batch_size, 1),
      num_eval_steps=-(-num_eval // config.batch_size))


def data_source(builder, split: str):
  """A split's records by index (TFDS's array_record data source), as serialized tf.Examples:
  tf.data parses them (`_read`), in its own threads, as `builder.as_dataset` would."""
  return builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)


def epoch_seed(seed: int, epoch: int) -> int:
  """The seed of an epoch's order and of its examples' augmentation."""
  return (seed * 1_000_003 + epoch) % 2**32


def epoch_order(num_records: int, seed: int, epoch: int) -> np.ndarray:
  """The record index at each position of an epoch: a permutation of the split drawn from
  (seed, epoch), computed whole (ImageNet's takes ~20 ms and 10 MB), never read through."""
  return np.random.default_rng(epoch_seed(seed, epoch)).permutation(num_records)


def host_positions(steps_per_epoch: int, global_batch: int, start_batch: int,
                   process_index: int, process_count: int) -> np.ndarray:
  """The positions of the epoch that a process reads, from global batch `start_batch` on: of each
  global batch, the process's contiguous block of global_batch // process_count positions, so
  the processes' local batches laid side by side, in process order, are the global batch."""
  local = global_batch // process_count
  batch_starts = np.arange(start_batch, steps_per_epoch, dtype=np.int64) * global_batch
  block = process_index * local + np.arange(local, dtype=np.int64)
  return (batch_starts[:, None] + block[None, :]).ravel()


def _read(builder, source, positions: np.ndarray, records: np.ndarray) -> tf.data.Dataset:
  """(position, encoded image, label) of `records`, read by index in chunks (one Python call
  for `_READ_CHUNK` records, several chunks at once) and parsed by TFDS's own graph."""

  def read(chunk: np.ndarray) -> np.ndarray:
    return np.array([source[int(record)] for record in chunk], dtype=object)

  def parse(position, serialized):
    example = builder.info.features.deserialize_example(
        serialized, decoders={'image': tfds.decode.SkipDecoding()})
    return position, example['image'], example['label']

  ds = tf.data.Dataset.from_tensor_slices((positions, records.astype(np.int64))).batch(_READ_CHUNK)
  ds = ds.map(lambda p, r: (p, tf.ensure_shape(tf.numpy_function(read, [r], tf.string),
                                               p.shape)),
              num_parallel_calls=_READ_PARALLEL)
  return ds.unbatch().map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _train_epoch(builder, source, config, epoch: int, skip_batches: int, steps_per_epoch: int,
                 process_index: int, process_count: int) -> tf.data.Dataset:
  """One epoch of this process's batches, from batch `skip_batches` on: only this process's
  records are read, by index (see the module docstring)."""
  seed = epoch_seed(config.seed, epoch)
  local_batch = config.batch_size // process_count
  positions = host_positions(steps_per_epoch, config.batch_size, skip_batches, process_index,
                             process_count)
  ds = _read(builder, source, positions, epoch_order(len(source), config.seed, epoch)[positions])
  image_fn = functools.partial(
      preprocessing.train_image, size=config.input.image_size, style=config.input.preprocessing,
      padding=config.input.crop_padding, flip=config.input.random_flip,
      interpolation=config.input.train_interpolation)

  fields = config.input

  def prepare(position, image, label):
    """Decoding, crop and flip, and the draws of the batch-wise augmentations, per example."""
    example_seed = tf.stack([tf.constant(seed, tf.int64), position])
    prepared = {'image': image_fn(image, example_seed), 'label': label}
    # Streams of their own, so that runs without these augmentations keep their crops and flips.
    if fields.randaugment_layers:
      prepared['randaugment'] = augment.randaugment_draws(
          tf.random.experimental.stateless_fold_in(example_seed, 1), fields.randaugment_layers)
    if fields.random_erasing_prob:
      prepared['erasing'], prepared['erasing_noise'] = augment.erasing_draws(
          tf.random.experimental.stateless_fold_in(example_seed, 2), tf.shape(prepared['image']))
    return prepared

  def augment_batch(batch):
    images = batch['image']
    if fields.randaugment_layers:
      images = augment.rand_augment(images, batch['randaugment'],
                                    magnitude=fields.randaugment_magnitude,
                                    prob=fields.randaugment_prob, fill=fields.mean)
    images = preprocessing.normalize(images, fields.mean, fields.std)
    if fields.random_erasing_prob:
      images = augment.random_erasing(images, batch['erasing'], batch['erasing_noise'],
                                      prob=fields.random_erasing_prob,
                                      area=fields.random_erasing_area)
    return {'image': images, 'label': batch['label']}

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)


def _next_in_background(batches: Iterator[dict]) -> concurrent.futures.Future:
  future = concurrent.futures.Future()

  def fetch():
    try:
      future.set_result(next(batches))
    except BaseException as error:  # pylint: disable=broad-exception-caught
      future.set_exception(error)

  threading.Thread(target=fetch, name='next_epoch', daemon=True).start()
  return future


def train_batches(builder, config, spec: InputSpec, start_step: int, *,
                  process_index: int | None = None, process_count: int | None = None
                  ) -> Iterator[dict]:
  """Endless numpy batches of this process's share of the global batch, from `start_step`.

  `process_index` and `process_count` default to JAX's; a test gives them to play one host of
  several. The next epoch's first batch is fetched in the background while the last
  `_EPOCH_LEAD_BATCHES` batches of the one before are consumed, so that starting an epoch (its
  read-ahead and tf.data's threads) does not stall training. (Datasets are built here: TFDS's
  reads are not thread-safe.)
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  source = data_source(builder, config.train_split)
  epoch, skip = divmod(start_step, spec.steps_per_epoch)

  def open_epoch(epoch: int, skip: int):
    ds = _train_epoch(builder, source, config, epoch, skip, spec.steps_per_epoch, process_index,
                      process_count)
    batches = ds.prefetch(config.input.prefetch_batches).as_numpy_iterator()
    # Only this list holds the iterator, so that the thread that empties it deletes the iterator.
    return [batches], _next_in_background(batches)

  upcoming = open_epoch(epoch, skip)
  while True:
    holder, first = upcoming
    open_next_at = max(spec.steps_per_epoch - skip - _EPOCH_LEAD_BATCHES, 1)
    for i, batch in enumerate(itertools.chain([first.result()], holder[0]), start=1):
      if i == open_next_at:
        upcoming = open_epoch(epoch + 1, 0)
      yield batch
    # Deleting a tf.data iterator joins its threads, which stalled real runs for up to 45 s at
    # epoch ends (0.7 s in isolation); a thread that waits deletes it instead.
    threading.Thread(target=holder.clear, daemon=True).start()
    del holder, first
    epoch, skip = epoch + 1, 0


def eval_batches(builder, config, spec: InputSpec) -> Iterator[dict]:
  """The eval split in `spec.num_eval_steps` batches; padding examples have mask 0. Each process
  reads its own block of each global batch, as in training."""
  local_batch = config.batch_size // jax.process_count()
  image_fn = functools.partial(preprocessing.eval_image, size=config.input.image_size,
                               style=config.input.preprocessing,
                               crop_fraction=config.input.crop_fraction,
                               interpolation=config.input.interpolation,
                               eval_decode=config.input.eval_decode)
  source = data_source(builder, config.eval_split)
  positions = host_positions(spec.num_eval_steps, config.batch_size, 0, jax.process_index(),
                             jax.process_count())
  # Past the split's end only in the last global batch, so each local batch is full but the last.
  positions = positions[positions < len(source)]
  ds = _read(builder, source, positions, positions).map(
      lambda _, image, label: {
          'image': preprocessing.normalize(image_fn(image), config.input.mean, config.input.std),
          'label': label},
      num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch).prefetch(config.input.prefetch_batches)
  size = config.input.image_size
  batches = ds.as_numpy_iterator()
  # Every process runs the same number of steps, so a share that ends early is padded.
  for _ in range(spec.num_eval_steps):
    batch = next(batches, {'image': np.zeros((0, size, size, 3), np.float32),
                           'label': np.zeros((0,), np.int64)})
    real = len(batch['label'])
    pad = local_batch - real
    yield {'image': np.pad(batch['image'], ((0, pad), (0, 0), (0, 0), (0, 0))),
           'label': np.pad(batch['label'], (0, pad)),
           'mask': np.arange(local_batch) < real}
