"""folder:PATH datasets: the two layouts, the stratified split, the fingerprint, the one-line
errors with nothing written, and a run that trains, evaluates and resumes on one."""

import itertools
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mobilenet_jax import train
from mobilenet_jax.data import datasets, folders, input_pipeline, records
from mobilenet_jax.errors import ConfigError
from tests.train_fixtures import tiny_config


def make_images(folder, classes=('cat', 'dog', 'eel'), per_class=10, size=(20, 24)):
  """Small JPEGs and PNGs, each of its own content, in a subfolder per class."""
  for c, name in enumerate(classes):
    os.makedirs(folder / name, exist_ok=True)
    for i in range(per_class):
      pixels = np.random.default_rng([c, i]).integers(0, 256, (*size, 3), np.uint8)
      Image.fromarray(pixels).save(folder / name / (f'{i}.jpg' if i % 2 else f'{i}.png'))
  return folder


def folder_config(root, tmp_path, **fields):
  config = tiny_config(f'folder:{root}', data_dir=str(tmp_path / 'tfds'),
                       eval_split='validation', **fields)
  datasets.configure(config)
  return config


def test_one_folder_splits_by_a_stratified_share_the_same_way_every_time(tmp_path):
  root = make_images(tmp_path / 'images', per_class=10)
  (root / 'dog' / '.DS_Store').write_text('hidden files are not images of the dataset')
  layout = folders.scan(str(root), 0.2)
  assert layout.classes == ('cat', 'dog', 'eel') and set(layout.splits) == {'train', 'validation'}
  for label in range(3):  # stratified: 2 of each class's 10 held out
    assert sum(l == label for _, l in layout.splits['validation']) == 2
    assert sum(l == label for _, l in layout.splits['train']) == 8
  assert all(path.startswith(layout.classes[label] + os.sep)
             for pairs in layout.splits.values() for path, label in pairs)
  assert folders.scan(str(root), 0.2) == layout  # no seed, no randomness
  # A class of one image keeps it for training.
  make_images(tmp_path / 'images', classes=('fox',), per_class=1)
  grown = folders.scan(str(root), 0.5)
  assert ('fox/0.png', 3) in grown.splits['train'] and grown.fingerprint != layout.fingerprint
  # Each added image changes the fingerprint, and the held-out share of the others moves little.
  (root / 'cat' / 'new.png').write_bytes((root / 'cat' / '0.png').read_bytes())
  added = folders.scan(str(root), 0.2)
  assert added.fingerprint != layout.fingerprint
  assert added.fingerprint != folders.scan(str(root), 0.2, skip_bad_files=True).fingerprint
  old = {p for p, _ in layout.splits['validation']}
  assert len(old - {p for p, _ in added.splits['validation']}) <= 1


def test_split_folders_are_the_splits_and_classes_are_their_union(tmp_path):
  root = tmp_path / 'data'
  make_images(root / 'train', per_class=3)
  make_images(root / 'val', classes=('cat', 'dog'), per_class=2)
  make_images(root / 'test', classes=('eel', 'gnu'), per_class=1)
  layout = folders.scan(str(root), 0.5)  # the fraction plays no part here
  assert layout.classes == ('cat', 'dog', 'eel', 'gnu')
  assert {s: len(p) for s, p in layout.splits.items()} == {'train': 9, 'val': 4, 'test': 2}
  assert ('test/gnu/0.png', 3) in layout.splits['test']
  assert datasets.configure(tiny_config(f'folder:{root}')) == [
      f'model.num_classes=4: the class subfolders of {root} (was 10)']


def _fails(config, match):
  with pytest.raises(ConfigError, match=match):
    datasets.configure(config)
    datasets.load_builder(config)


def test_bad_folders_get_one_line_and_nothing_is_written(tmp_path):
  config = lambda root, **f: tiny_config(f'folder:{root}', data_dir=str(tmp_path / 'tfds'),
                                         eval_split='validation', **f)
  _fails(config(tmp_path / 'nowhere'), 'no such folder')
  (tmp_path / 'empty').mkdir()
  _fails(config(tmp_path / 'empty'), 'holds no class subfolders')
  make_images(tmp_path / 'one', classes=('cat',))
  _fails(config(tmp_path / 'one'), r"only one class \('cat'\)")
  (tmp_path / 'hollow' / 'cat').mkdir(parents=True)
  make_images(tmp_path / 'hollow', classes=('dog',))
  _fails(config(tmp_path / 'hollow'), "the class folder 'cat' holds no files")
  make_images(tmp_path / 'split' / 'train')
  _fails(config(tmp_path / 'split'), r"eval_split='validation' is not a split of folder:.*; it "
                                     'has: train$')
  make_images(tmp_path / 'named' / 'train')
  (tmp_path / 'named' / 'val-2').mkdir()
  _fails(config(tmp_path / 'named'), "the split folder 'val-2' cannot be a TFDS split name")
  _fails(config(tmp_path / 'one', folder_eval_fraction=1.0), r'folder_eval_fraction=1.0')
  bad = make_images(tmp_path / 'bad')
  (bad / 'cat' / 'notes.txt').write_text('not an image')
  (bad / 'dog' / 'cut.jpg').write_bytes((bad / 'dog' / '1.jpg').read_bytes()[:20])
  (bad / 'eel' / 'photo.tiff').write_bytes(b'')
  Image.new('RGB', (4, 4)).save(bad / 'eel' / 'scan.tiff')  # an image TensorFlow cannot decode
  _fails(config(bad), rf"4 files are not images TensorFlow decodes \(JPEG/PNG/GIF/BMP\), the "
                      rf"first '{bad}/cat/notes.txt'; remove them, or leave them out with "
                      r'--config.folder_skip_bad_files=True')
  assert not (tmp_path / 'tfds').exists()
  # Left out where a field says so: the rest is prepared.
  skipping = folder_config(bad, tmp_path, folder_skip_bad_files=True)
  builder = datasets.load_builder(skipping)
  assert sum(datasets.split_size(builder, s) for s in ('train', 'validation')) == 30


def test_prepared_once_read_by_tfds_and_prepared_anew_when_files_change(tmp_path, monkeypatch):
  root = make_images(tmp_path / 'images')
  config = folder_config(root, tmp_path)
  assert config.model.num_classes == 3
  builder = datasets.load_builder(config)
  assert builder.info.features['label'].names == ['cat', 'dog', 'eel']
  assert {s: datasets.split_size(builder, s) for s in ('train', 'validation')} == {
      'train': 27, 'validation': 3}
  files = {ex['file_name'].decode(): ex['label']
           for ex in builder.as_data_source('validation')}
  assert files == {p: l for p, l in folders.scan(str(root), 0.1).splits['validation']}
  stored = builder.as_data_source('train', decoders={'image': tfds.decode.SkipDecoding()})[0]
  assert stored['image'] == (root / stored['file_name'].decode()).read_bytes()  # as it was
  monkeypatch.setattr(folders.FolderDataset, 'download_and_prepare',
                      lambda *_, **__: pytest.fail('prepared twice'))
  assert datasets.load_builder(config).data_dir == builder.data_dir
  monkeypatch.undo()
  make_images(root, classes=('cat',), per_class=12)  # two more cats
  grown = datasets.load_builder(config)
  assert grown.data_dir != builder.data_dir and datasets.split_size(grown, 'train') == 29


def test_a_folder_prepared_as_tfrecord_by_an_earlier_version_is_prepared_again_once(tmp_path,
                                                                                    capsys):
  root = make_images(tmp_path / 'images', per_class=4)
  config = folder_config(root, tmp_path)
  layout = folders.scan(str(root), config.folder_eval_fraction)
  old = folders.FolderDataset(layout=layout, data_dir=config.data_dir)
  old.download_and_prepare(file_format='tfrecord')  # as the version before array_record did
  assert old.is_prepared() and not records.ready(old)
  builder = datasets.load_builder(config)
  assert builder.data_dir == old.data_dir and records.ready(builder)
  assert 'as tfrecord, which is read only in order; preparing it again, once, as array_record' \
      in capsys.readouterr().out
  source = builder.as_data_source('train')
  assert len(source) == datasets.split_size(builder, 'train') == 9
  assert {source[i]['file_name'] for i in range(9)} == {
      p.encode() for p, _ in layout.splits['train']}
  datasets.load_builder(config)
  assert capsys.readouterr().out == ''  # once


@pytest.mark.slow  # ~40 s of compiling a 3-class model; the folder's input is tested above
def test_a_folder_run_trains_evaluates_and_keeps_its_class_names(tmp_path):
  root = make_images(tmp_path / 'images', per_class=6)
  config = folder_config(root, tmp_path, num_train_steps=1, eval_every_steps=1)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['steps'] == 1 and 0 <= results['top1'] <= results['top5'] == 1  # 3 classes
  assert results['classes'] == ['cat', 'dog', 'eel']
  assert json.loads((tmp_path / 'run' / 'dataset.json').read_text()) == {
      'dataset': f'folder:{root}', 'classes': ['cat', 'dog', 'eel']}
  step, metrics = train.evaluate_latest(str(tmp_path / 'run'))  # from the run's own files
  assert step == 1 and metrics['raw/top1'] == results['top1']


def test_a_resumed_folder_run_reads_the_same_batches(tmp_path):
  root = make_images(tmp_path / 'images', per_class=14)
  config = folder_config(root, tmp_path)
  builder = datasets.load_builder(config)
  spec = input_pipeline.describe(builder, config, datasets.split_size)
  assert spec.steps_per_epoch == 4  # 39 training images: step 3 to 6 crosses into epoch 2
  whole = list(itertools.islice(input_pipeline.train_batches(builder, config, spec, 0), 6))
  resumed = list(itertools.islice(input_pipeline.train_batches(builder, config, spec, 3), 3))
  for a, b in zip(whole[3:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  assert not np.array_equal(whole[0]['label'], whole[4]['label'])  # epochs differ
