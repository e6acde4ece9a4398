"""The input pipeline: deterministic, resumable at any step, eval split covered exactly once."""

import itertools
import re
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mobilenet_jax.data import datasets, input_pipeline
from tests.train_fixtures import AUGMENTED, mock_data, tiny_config


def _batches(config, start_step, count):
  with mock_data(num_examples=40):
    builder = datasets.load_builder(config)
    spec = input_pipeline.describe(builder, config, datasets.split_size)
    return spec, list(itertools.islice(
        input_pipeline.train_batches(builder, config, spec, start_step), count))


@pytest.mark.parametrize('dataset', ['cifar10', 'imagenet2012'])
def test_train_batches_resume_at_any_step_and_repeat_with_the_seed(dataset):
  config = tiny_config(dataset)
  spec, from_start = _batches(config, 0, 8)
  assert spec.steps_per_epoch == 5 and spec.num_train_examples == 40
  _, resumed = _batches(config, 3, 5)  # crosses into the second epoch
  for a, b in zip(from_start[3:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  first = from_start[0]
  assert first['image'].shape == (8, 16, 16, 3) and first['image'].dtype == np.float32
  assert abs(float(first['image'].mean())) < 3  # normalised, not raw pixels
  # Epochs differ in order or augmentation; another seed gives other batches.
  assert not np.array_equal(from_start[0]['image'], from_start[5]['image'])
  _, other_seed = _batches(tiny_config(dataset, seed=1), 0, 1)
  assert not np.array_equal(first['image'], other_seed[0]['image'])


def test_augmented_batches_are_a_function_of_seed_epoch_and_example():
  config = tiny_config(**{**AUGMENTED, 'input.random_erasing_prob': 1.0})
  _, from_start = _batches(config, 0, 7)
  _, resumed = _batches(config, 4, 3)  # the last batch of epoch 0, two of epoch 1
  for a, b in zip(from_start[4:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
  _, plain = _batches(tiny_config(), 0, 7)
  for augmented, crop_and_flip in zip(from_start, plain):
    assert augmented['image'].shape == crop_and_flip['image'].shape
    np.testing.assert_array_equal(augmented['label'], crop_and_flip['label'])  # same order
    assert not np.array_equal(augmented['image'], crop_and_flip['image'])
    assert np.isfinite(augmented['image']).all() and np.abs(augmented['image']).max() < 10


def test_each_process_reads_its_block_of_the_global_batch_row_for_row(monkeypatch):
  """Two processes' batches, stacked as `parallel.to_devices` places them (process 0's rows
  first), are one process's global batch in the same row order: the step's per-row draws
  (dropout, drop path, Mixup's partners) then fall on the same images on any number of hosts."""
  config = tiny_config()
  _, whole = _batches(config, 1, 2)  # from a resumed step: the skip counts global batches
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  shares = []
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    shares.append(_batches(config, 1, 2)[1])
  for step, batch in enumerate(whole):
    assert shares[0][step]['image'].shape[0] == 4
    for key in ('image', 'label'):
      np.testing.assert_array_equal(
          np.concatenate([shares[0][step][key], shares[1][step][key]]), batch[key])


def test_eval_batches_cover_the_split_once_with_padding_masked():
  config = tiny_config()
  with mock_data(num_examples=20):
    builder = datasets.load_builder(config)
    spec = input_pipeline.describe(builder, config, datasets.split_size)
    batches = list(input_pipeline.eval_batches(builder, config, spec))
  assert spec.num_eval_steps == 3 and len(batches) == 3
  assert [int(b['mask'].sum()) for b in batches] == [8, 8, 4]
  assert all(b['image'].shape == (8, 16, 16, 3) for b in batches)


@pytest.mark.parametrize('dataset, hint', [
    ('cifar10', '--config.download=True'),
    ('imagenet2012', '--config.manual_dir=FOLDER'),
    ('fashion_mnist', 'apt-get install dataset-fashion-mnist'),
])
def test_a_missing_dataset_fails_within_seconds_saying_how_to_get_it(dataset, hint, tmp_path):
  config = tiny_config(dataset, data_dir=str(tmp_path), download=False,
                       fashion_mnist_dir=str(tmp_path / 'none'))
  start = time.perf_counter()
  with pytest.raises(datasets.DatasetUnavailable, match=f'{dataset!r} is not prepared') as e:
    datasets.load_builder(config)
  assert hint in str(e.value) and time.perf_counter() - start < 5


@pytest.mark.parametrize('name, message', [
    ('a/b:c', "dataset='a/b:c' cannot be parsed; give a TFDS name (NAME, NAME/CONFIG or "
              'NAME:VERSION, e.g. cifar10, imagenet2012:5.1.0) or folder:PATH'),
    ('x:y', "dataset='x:y': community datasets (x:...) are not supported"),
    ('cifar11', "dataset='cifar11' is not a TFDS dataset"),
])
def test_a_dataset_name_tfds_cannot_read_gets_one_line(name, message):
  with pytest.raises(datasets.ConfigError) as e:
    datasets.check_known(name)
  assert str(e.value).startswith(message) and '\n' not in str(e.value)
  for good in ('cifar10', 'cifar10/plain_text', 'mnist:3.0.1', 'folder:/any/path'):
    datasets.check_known(good)


def test_a_split_the_dataset_lacks_gets_one_line_naming_those_it_has():
  config = tiny_config(eval_split='tset')
  with pytest.raises(datasets.ConfigError, match=r"^eval_split='tset' is not a split of "
                                                 'cifar10; it has: test, train$'):
    datasets.check_splits(config, ['train', 'test'])
  for split in ('test', 'train[:90%]', 'train[90%:]+test'):
    datasets.check_splits(tiny_config(eval_split=split), ['train', 'test'])


def test_preparing_a_dataset_is_one_line_in_place_of_tfds_progress_bars(capfd):
  with datasets._one_line('preparing x'):
    print('Downloading and preparing dataset ...')  # as TFDS's builders do, and their bars:
    for _ in tfds.core.utils.tqdm_utils.tqdm(range(3), desc='Generating splits'):
      pass
  out, err = capfd.readouterr()
  assert re.fullmatch(r'preparing x \.\.\. done in \d+ s\n', out) and 'Generating' not in err
  with pytest.raises(OSError), datasets._one_line('preparing y'):
    raise OSError('disk full')
  assert capfd.readouterr().out == 'preparing y ... failed\n'


@pytest.mark.slow
def test_fashion_mnist_prepares_offline_from_the_debian_idx_files(tmp_path, capfd):
  config = tiny_config('fashion_mnist', data_dir=str(tmp_path), download=False)
  if not datasets._has_idx_files(config.fashion_mnist_dir):
    pytest.fail('apt-get install dataset-fashion-mnist (the .ci/run script installs it)')
  builder = datasets.load_builder(config)
  out, err = capfd.readouterr()
  assert re.fullmatch(r'preparing fashion_mnist in .* \(once\) \.\.\. done in \d+ s\n', out)
  assert '%' not in err  # no progress bar
  assert builder.is_prepared() and builder.info.features['label'].num_classes == 10
  assert datasets.split_size(builder, 'train') == 60_000
  assert datasets.split_size(builder, 'test') == 10_000
  config.eval_split = 'tset'  # a split it lacks: one line (the 93-line ValueError)
  with pytest.raises(datasets.ConfigError, match="eval_split='tset' is not a split of "
                                                 'fashion_mnist; it has: test, train'):
    datasets.load_builder(config)
  config.eval_split = 'test'
  spec = input_pipeline.describe(builder, config, datasets.split_size)
  batch = next(input_pipeline.eval_batches(builder, config, spec))
  assert batch['image'].shape == (8, 16, 16, 3)  # grayscale made three channels
  # The same pixels in every channel, before each channel's own normalization.
  pixels = batch['image'] * np.asarray(config.input.std) + np.asarray(config.input.mean)
  np.testing.assert_allclose(pixels[..., 0], pixels[..., 2], atol=1e-3)
