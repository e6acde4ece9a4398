"""`python -m experiments.predict` end to end, through the real command line, on generated images
and random timm weights: the top-5 of each image is the API's model's on the API's preprocessing,
and a missing or unreadable image is one line that does not stop the others."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
import torch

import mobilenet_jax as mnj
from tests.interop.test_timm_import import SIZE, _timm_model

IMAGES = {'a.png': (40, 56), 'b.png': (64, 64), 'c.jpg': (90, 70)}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  folder = tmp_path_factory.mktemp('images')
  rng = np.random.default_rng(0)
  arrays = {}
  for name, shape in IMAGES.items():
    arrays[name] = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    encode = tf.io.encode_png if name.endswith('png') else tf.io.encode_jpeg
    tf.io.write_file(str(folder / name), encode(arrays[name]))
  (folder / 'broken.png').write_bytes(b'not an image')
  weights = folder.parent / 'weights.pth'
  torch.save(_timm_model('v4_conv_small').state_dict(), weights)
  return folder, f'timm:{weights}', arrays


def _predict(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.predict',
                         '--config=configs/v4_conv_small.py', f'--config.input.image_size={SIZE}',
                         '--batch_size=2', *args], capture_output=True, text=True, timeout=300)


def test_predict_prints_the_top5_of_each_image_and_a_line_per_bad_one(files):
  folder, weights, arrays = files
  result = _predict(f'--init_from={weights}', '--json', str(folder), 'missing.png')
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 2, result.stderr
  assert errors[0].startswith(f'error: {folder / "broken.png"}: cannot be read as an image')
  assert errors[1] == 'error: missing.png: no such file'
  records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
  assert [r['path'] for r in records] == [str(folder / n) for n in sorted(IMAGES)]
  # The same on the API's model and preprocessing (the JPEG's pixels as TF decodes them).
  module, variables = mnj.create_model('v4_conv_small', weights, **{'input.image_size': SIZE})
  transform = mnj.eval_transform('v4_conv_small', weights, **{'input.image_size': SIZE})
  apply = jax.jit(module.apply)  # every image is transformed to one shape: one compile
  for record in records:
    path = record['path']
    image = tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()
    probabilities = np.asarray(jax.nn.softmax(apply(variables, transform(image))))[0]
    want = np.argsort(-probabilities, kind='stable')[:5]
    assert [e['class'] for e in record['top']] == want.tolist()
    np.testing.assert_allclose([e['probability'] for e in record['top']], probabilities[want],
                               atol=1e-5)
    assert all(e['name'].startswith('n') for e in record['top'])  # ImageNet's synset ids
    if os.path.basename(path) != 'c.jpg':  # a PNG holds the array itself
      np.testing.assert_array_equal(image, arrays[os.path.basename(path)])


def test_predict_prints_names_and_needs_a_source(files):
  folder, weights, _ = files
  result = _predict(f'--init_from={weights}', str(folder / 'a.png'))
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  at = lines.index(str(folder / 'a.png'))
  assert len(lines[at + 1:at + 6]) == 5 and all('%' in line and ' n' in line
                                                 for line in lines[at + 1:at + 6])
  result = _predict(str(folder / 'a.png'))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      'error: give exactly one of --workdir (a run) and --init_from (with --config)')
