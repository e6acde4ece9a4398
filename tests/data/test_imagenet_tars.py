"""ImageNet from its two tar files, through TFDS's own `imagenet2012` builder, end to end.

The fixture is the smallest honest ImageNet: `ILSVRC2012_img_train.tar` holds an inner tar per
synset (`n01751748.tar` of `n01751748_<i>.JPEG`), as the real one does, for the four synsets of
the first four validation images; `ILSVRC2012_img_val.tar` holds `ILSVRC2012_val_00000001.JPEG`
to `..._00000004.JPEG`. TFDS labels validation images by zipping their sorted names with the
label file it ships (50,000 lines), so these four take its first four labels, and train images
by their inner tar's synset among the 1000 of `labels.txt`: the model has 1000 classes, 4 seen.
What it covers: the tar layout, TFDS's preparation from `manual_dir`, both splits' labels, and
training and evaluating on the result. Not covered: the 22 CMYK and one PNG train images that
TFDS re-encodes (by file name), and the test split (no labels).
"""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from mobilenet_jax import train
from mobilenet_jax.data import datasets, input_pipeline
from tests.train_fixtures import tiny_config

# The labels of ILSVRC2012_val_00000001-4.JPEG, the first lines of TFDS's validation_labels.txt.
SYNSETS = ('n01751748', 'n09193705', 'n02105855', 'n04263257')
TRAIN_PER_SYNSET = 6  # 24 images: 3 steps an epoch of the tiny config's 8


def _jpeg(seed) -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format='JPEG', quality=90)
  return out.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
  out = io.BytesIO()
  with tarfile.open(fileobj=out, mode='w') as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return out.getvalue()


def make_imagenet_tars(manual_dir):
  manual_dir.mkdir(parents=True, exist_ok=True)
  (manual_dir / 'ILSVRC2012_img_train.tar').write_bytes(_tar({
      f'{synset}.tar': _tar({f'{synset}_{i}.JPEG': _jpeg([s, i])
                             for i in range(TRAIN_PER_SYNSET)})
      for s, synset in enumerate(SYNSETS)}))
  (manual_dir / 'ILSVRC2012_img_val.tar').write_bytes(_tar({
      f'ILSVRC2012_val_{i + 1:08d}.JPEG': _jpeg([100, i]) for i in range(len(SYNSETS))}))
  return manual_dir


def imagenet_config(tmp_path, **fields):
  return tiny_config('imagenet2012', data_dir=str(tmp_path / 'tfds'),
                     manual_dir=str(make_imagenet_tars(tmp_path / 'manual')), download=True,
                     **fields)


def test_imagenet_is_prepared_from_its_tar_files_with_both_splits_labelled(tmp_path):
  config = imagenet_config(tmp_path)
  builder = datasets.load_builder(config)
  names = builder.info.features['label'].names
  assert len(names) == 1000 and builder.info.splits.keys() == {'train', 'validation'}
  labels = lambda split: {ex['file_name'].decode(): names[ex['label']]
                          for ex in builder.as_data_source(split)}
  assert labels('validation') == {f'ILSVRC2012_val_{i + 1:08d}.JPEG': synset
                                  for i, synset in enumerate(SYNSETS)}
  train_labels = labels('train')
  assert len(train_labels) == 24
  assert all(name.startswith(synset + '_') for name, synset in train_labels.items())
  spec = input_pipeline.describe(builder, config, datasets.split_size)
  assert (spec.num_classes, spec.steps_per_epoch, spec.num_eval_steps) == (1000, 3, 1)
  batch = next(input_pipeline.train_batches(builder, config, spec, 0))
  assert batch['image'].shape == (8, 16, 16, 3)
  assert {names[label] for label in batch['label']} <= set(SYNSETS)
  assert datasets.load_builder(config).is_prepared()  # once: the stock builder reads it now


@pytest.mark.slow  # compiling the 1000-class model (shared with test_loop's imagenet2012 case)
def test_imagenet_from_tars_trains_and_evaluates(tmp_path):
  results = train.train_and_evaluate(imagenet_config(tmp_path), str(tmp_path / 'run'))
  assert results['steps'] == 4 and 0 <= results['top1'] <= results['top5'] <= 1
  assert results['dataset'] == 'imagenet2012' and results['classes'][:2] == [
      'n01440764', 'n01443537']
  step, metrics = train.evaluate_latest(str(tmp_path / 'run'))
  assert step == 4 and metrics['raw/top5'] == results['top5']
