"""tf.data input: deterministic, resumable at any step, split across processes and devices.

An epoch's order and augmentation are pure functions of (seed, epoch): the files are shuffled
with a per-epoch seed, examples are shuffled with it, and each example draws its augmentation
(crop, flip, RandAugment, random erasing) from (seed, epoch, position); Mixup and CutMix happen
on the device, from (seed, step). Each process takes its block of each global batch of that one
order, so a global batch holds the same images in the same rows on one host or several. Resuming
at step s rebuilds epoch s // steps_per_epoch and skips the batches already seen before any
decoding, so a resumed run sees the same images.
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


# Batches before an epoch's end at which the next epoch starts filling its shuffle buffer.
_EPOCH_LEAD_BATCHES = 50


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


def _local_batch_size(global_batch: int) -> int:
  return global_batch // jax.process_count()


def _read(builder, split: str, *, shuffle_seed: int | None, whole: bool = False
          ) -> tf.data.Dataset:
  """The split's encoded examples: all of them, or (evaluation) this process's share."""
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False)
  return builder.as_dataset(
      split=split if whole else tfds.split_for_jax_process(split),
      shuffle_files=shuffle_seed is not None, read_config=read_config,
      decoders={'image': tfds.decode.SkipDecoding()})


def _train_epoch(builder, config, epoch: int, skip_batches: int, local_batch: int,
                 steps_per_epoch: int) -> tf.data.Dataset:
  """One epoch of this process's batches: every process reads the whole split in the same seeded
  order and takes its block of each global batch, so that each global batch holds the same
  examples in the same rows however many processes share it."""
  seed = config.seed * 1_000_003 + epoch
  global_batch = config.batch_size
  ds = _read(builder, config.train_split, shuffle_seed=seed, whole=True)
  ds = ds.enumerate().shuffle(config.input.shuffle_buffer, seed=seed,
                              reshuffle_each_iteration=False)
  ds = ds.take(steps_per_epoch * global_batch).skip(skip_batches * global_batch)
  # Process p takes the p-th block of local_batch examples of each global batch, the rows its
  # devices hold of the global array (`parallel.to_devices`): the global batch is then the same
  # array, row for row, on any number of hosts, and so are the per-row draws of the step
  # (dropout, drop path, Mixup's partners). Every process_count-th example instead would
  # permute the rows with the host count.
  first = jax.process_index() * local_batch
  ds = ds.enumerate().filter(
      lambda position, _: (position % global_batch >= first)
      & (position % global_batch < first + local_batch)).map(lambda _, element: element)
  image_fn = functools.partial(
      preprocessing.train_image, size=config.input.image_size, style=config.input.preprocessing,
      padding=config.input.crop_padding, flip=config.input.random_flip)

  fields = config.input

  def prepare(index, example):
    """Decoding, crop and flip, and the draws of the batch-wise augmentations, per example."""
    example_seed = tf.stack([tf.constant(seed, tf.int64), index])
    prepared = {'image': image_fn(example['image'], example_seed), 'label': example['label']}
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


def train_batches(builder, config, spec: InputSpec, start_step: int) -> Iterator[dict]:
  """Endless numpy batches of this process's share of the global batch, from `start_step`.

  The next epoch's first batch, which fills its shuffle buffer, is fetched in the background
  while the last `_EPOCH_LEAD_BATCHES` batches of the one before are consumed, so that the
  filling does not stall training. (Datasets are built here: TFDS's reads are not thread-safe.)
  """
  local_batch = _local_batch_size(config.batch_size)
  epoch, skip = divmod(start_step, spec.steps_per_epoch)

  def open_epoch(epoch: int, skip: int):
    ds = _train_epoch(builder, config, epoch, skip, local_batch, spec.steps_per_epoch)
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
  """The eval split in `spec.num_eval_steps` batches; padding examples have mask 0."""
  local_batch = _local_batch_size(config.batch_size)
  image_fn = functools.partial(preprocessing.eval_image, size=config.input.image_size,
                               style=config.input.preprocessing,
                               crop_fraction=config.input.crop_fraction,
                               interpolation=config.input.interpolation)
  ds = _read(builder, config.eval_split, shuffle_seed=None).map(
      lambda ex: {'image': preprocessing.normalize(image_fn(ex['image']), config.input.mean,
                                                   config.input.std),
                  'label': ex['label']},
      num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch).prefetch(config.input.prefetch_batches)
  size = config.input.image_size
  batches = ds.as_numpy_iterator()
  # Every process runs the same number of steps, so shorter shares are padded with empty batches.
  for _ in range(spec.num_eval_steps):
    batch = next(batches, {'image': np.zeros((0, size, size, 3), np.float32),
                           'label': np.zeros((0,), np.int64)})
    real = len(batch['label'])
    pad = local_batch - real
    yield {'image': np.pad(batch['image'], ((0, pad), (0, 0), (0, 0), (0, 0))),
           'label': np.pad(batch['label'], (0, pad)),
           'mask': np.arange(local_batch) < real}
