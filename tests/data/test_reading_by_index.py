"""Reading by index: each host reads only its own records, the global batch is the same however
many hosts share it, and a resume reads no record of the batches it skips."""

import collections
import itertools
import threading

import numpy as np
import pytest

from mobilenet_jax.data import datasets, input_pipeline
from tests.train_fixtures import mock_data, tiny_config

EXAMPLES = 40  # 5 global batches of 8 an epoch


class CountingSource:
  """A data source that counts the reads of each record (grain reads in threads)."""

  def __init__(self, source):
    self.source, self.reads, self._lock = source, collections.Counter(), threading.Lock()

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    with self._lock:
      self.reads[index] += 1
    return self.source[index]


def test_host_positions_are_contiguous_blocks_that_tile_each_global_batch():
  hosts = [input_pipeline.host_positions(5, 8, 2, h, 4) for h in range(4)]
  assert hosts[1].tolist() == [18, 19, 26, 27, 34, 35]  # batches 2, 3, 4: positions 2-3 of each
  np.testing.assert_array_equal(np.sort(np.concatenate(hosts)), np.arange(16, 40))
  one_host = input_pipeline.host_positions(5, 8, 2, 0, 1).reshape(3, 8)
  np.testing.assert_array_equal(np.concatenate([h.reshape(3, 2) for h in hosts], axis=1),
                                one_host)


def test_the_epoch_order_is_a_permutation_drawn_from_seed_and_epoch():
  def order(seed, epoch):
    records = input_pipeline.epoch_order(1000, seed, epoch)
    return [int(records[i]) for i in range(1000)]

  assert sorted(order(0, 0)) == list(range(1000))
  assert order(0, 0) == order(0, 0)
  assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
  assert int(input_pipeline.epoch_order(1000, 0, 3)[617]) == order(0, 3)[617]  # by position


def _epoch_reads(config, epoch, skip, process_index, process_count):
  """The records one host reads for an epoch from batch `skip` on, and its batches."""
  with mock_data(num_examples=EXAMPLES):
    builder = datasets.load_builder(config)
    source = CountingSource(input_pipeline.data_source(builder, config.train_split))
    epoch_ds = input_pipeline._train_epoch(builder, source, config, epoch, skip, EXAMPLES // 8,
                                           process_index, process_count)
    batches = list(epoch_ds.as_numpy_iterator())
  return source.reads, batches


def test_two_hosts_read_disjoint_halves_of_each_epoch_and_make_one_hosts_batches():
  config = tiny_config()
  one_reads, one = _epoch_reads(config, 1, 0, 0, 1)
  (reads_0, host_0), (reads_1, host_1) = (_epoch_reads(config, 1, 0, h, 2) for h in (0, 1))
  assert set(one_reads) == set(range(EXAMPLES)) and set(one_reads.values()) == {1}
  assert not set(reads_0) & set(reads_1) and len(reads_0) == len(reads_1) == EXAMPLES // 2
  assert set(reads_0.values()) == set(reads_1.values()) == {1}
  assert len(one) == len(host_0) == len(host_1) == 5
  for whole, first, second in zip(one, host_0, host_1):
    assert first['image'].shape == (4, 16, 16, 3)
    for key in ('image', 'label'):  # same examples, same places, same augmentation
      np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), whole[key])


def test_train_batches_of_two_hosts_side_by_side_are_one_hosts_across_epochs_and_resumes():
  config = tiny_config()

  def batches(start, count, **hosts):
    with mock_data(num_examples=EXAMPLES):
      builder = datasets.load_builder(config)
      spec = input_pipeline.describe(builder, config, datasets.split_size)
      return list(itertools.islice(
          input_pipeline.train_batches(builder, config, spec, start, **hosts), count))

  one = batches(0, 7)
  halves = [batches(3, 4, process_index=h, process_count=2) for h in (0, 1)]
  for whole, first, second in zip(one[3:], *halves):  # steps 3-6 cross into the second epoch
    np.testing.assert_array_equal(np.concatenate([first['image'], second['image']]),
                                  whole['image'])


def test_a_resume_mid_epoch_reads_only_the_records_of_the_batches_it_has_left():
  config = tiny_config()
  _, whole = _epoch_reads(config, 0, 0, 0, 1)
  reads, resumed = _epoch_reads(config, 0, 3, 0, 1)
  order = input_pipeline.epoch_order(EXAMPLES, config.seed, 0)
  assert dict(reads) == {int(order[p]): 1 for p in range(3 * 8, EXAMPLES)}  # none of 0-2
  for a, b in zip(whole[3:], resumed, strict=True):
    np.testing.assert_array_equal(a['image'], b['image'])


@pytest.mark.parametrize('process_count', [1, 2])
def test_eval_batches_of_each_host_are_its_block_of_each_global_batch(process_count,
                                                                      monkeypatch):
  config = tiny_config()
  blocks = []
  for h in range(process_count):
    monkeypatch.setattr(input_pipeline.jax, 'process_index', lambda h=h: h)
    monkeypatch.setattr(input_pipeline.jax, 'process_count', lambda: process_count)
    with mock_data(num_examples=20):
      builder = datasets.load_builder(config)
      spec = input_pipeline.describe(builder, config, datasets.split_size)
      blocks.append(list(input_pipeline.eval_batches(builder, config, spec)))
  masks = [np.concatenate(b) for b in zip(*[[x['mask'] for x in host] for host in blocks])]
  labels = [np.concatenate(b) for b in zip(*[[x['label'] for x in host] for host in blocks])]
  assert [int(m.sum()) for m in masks] == [8, 8, 4] and masks[-1][:4].all()
  with mock_data(num_examples=20):
    source = datasets.load_builder(config).as_data_source(config.eval_split)
    expected = [int(source[i]['label']) for i in range(20)]
  assert np.concatenate([l[m] for l, m in zip(labels, masks)]).tolist() == expected
