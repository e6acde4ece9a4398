"""RandAugment's ops against PIL's, and RandAugment and random erasing as pure functions of their
seed, image by image whatever batch an image is in."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from mobilenet_jax.data import augment

OPS = augment.RANDAUGMENT_OPS
FILL = (72.9, 72.9, 72.9)


def _image(size: int = 28) -> np.ndarray:
  """A gradient with noise: every op has something to change."""
  rng = np.random.default_rng(0)
  ramp = np.linspace(30, 200, size)[:, None, None]
  return (ramp + rng.integers(0, 40, (size, size, 3))).astype(np.uint8)


def _op(name: str, image: np.ndarray, level: float) -> np.ndarray:
  """One op on one image (a batch of one)."""
  return OPS[name](tf.constant(image, tf.float32)[None], tf.constant([level]),
                   tf.constant(FILL)).numpy()[0]


# PIL rounds every result to uint8 (and its grayscale to integers): within 1.5 of it.
@pytest.mark.parametrize('name, level, pil_op', [
    ('auto_contrast', 0.5, ImageOps.autocontrast),
    ('equalize', 0.5, ImageOps.equalize),
    ('solarize', 0.5, lambda image: ImageOps.solarize(image, 128)),
    ('solarize', -0.25, lambda image: ImageOps.solarize(image, 192)),
    ('posterize', 0.5, lambda image: ImageOps.posterize(image, 6)),
    ('posterize', 1.0, lambda image: ImageOps.posterize(image, 4)),
    ('color', 0.5, lambda image: ImageEnhance.Color(image).enhance(1.45)),
    ('contrast', -0.5, lambda image: ImageEnhance.Contrast(image).enhance(0.55)),
    ('brightness', 0.5, lambda image: ImageEnhance.Brightness(image).enhance(1.45)),
    ('sharpness', 0.5, lambda image: ImageEnhance.Sharpness(image).enhance(1.45)),
    ('sharpness', -1.0, lambda image: ImageEnhance.Sharpness(image).enhance(0.1)),
])
def test_pixel_ops_match_pil(name, level, pil_op):
  image = _image()
  want = np.asarray(pil_op(Image.fromarray(image)), np.float32)
  got = _op(name, image, level)
  np.testing.assert_allclose(got, want, atol=1.5, rtol=0)
  assert not np.array_equal(want, image)  # the case changes the image


@pytest.mark.parametrize('name', ['rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y'])
def test_geometric_ops_at_level_zero_keep_the_image(name):
  image = _image()
  np.testing.assert_allclose(_op(name, image, 0.0), image, atol=1e-3)


def test_translation_and_rotation_move_the_image_and_fill_with_the_mean_pixel():
  image = _image()
  shift = 7  # pixels: level 7 / (0.45 * 28)
  got = _op('translate_x', image, shift / (0.45 * 28))
  np.testing.assert_allclose(got[:, :-shift], image[:, shift:], atol=1e-3)
  np.testing.assert_allclose(got[:, -shift:], 72.9, atol=1e-3)
  half_turn = _op('rotate', image, 6.0)
  np.testing.assert_allclose(half_turn[::-1, ::-1], image, atol=1e-2)  # about the centre


def _rand_augment(seed, image=None, layers=2, **kwargs):
  kwargs = {'magnitude': 9.0, 'prob': 1.0, 'fill': FILL, **kwargs}
  image = _image() if image is None else image
  draws = augment.randaugment_draws(tf.constant(seed, tf.int64), layers)
  return augment.rand_augment(tf.constant(image, tf.float32)[None], draws[None],
                              **kwargs).numpy()[0]


def test_rand_augment_is_a_function_of_its_seed_and_keeps_shape_and_range():
  outputs = [_rand_augment([0, i]) for i in range(24)]
  np.testing.assert_array_equal(outputs[3], _rand_augment([0, 3]))
  distinct = {o.tobytes() for o in outputs}
  assert len(distinct) > 20  # other seeds (examples, epochs) draw other ops and signs
  for out in outputs:
    assert out.shape == (28, 28, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
  np.testing.assert_array_equal(_rand_augment([0, 3], prob=0.0), _image())
  np.testing.assert_array_equal(_rand_augment([0, 3], layers=0), _image())


def test_rand_augment_draws_every_op():
  # With one layer at magnitude 10, each op leaves its own trace; count which outputs occur.
  image = _image()
  expected = {name: _op(name, image, sign).tobytes() for name in OPS for sign in (-1.0, 1.0)}
  seen = set()
  for i in range(200):
    out = _rand_augment([1, i], layers=1, magnitude=10.0).tobytes()
    seen.update(name for name, want in expected.items() if want == out)
  assert seen == set(OPS)


def test_a_batch_gets_what_each_of_its_images_gets_alone():
  # Every op in one batch (some shares empty), each image as if on its own: shards of a global
  # batch on several hosts see the same images as one host.
  images = np.stack([_image()] * 16) + np.arange(16, dtype=np.uint8)[:, None, None, None]
  seeds = [[2, i] for i in range(16)]
  draws = tf.stack([augment.randaugment_draws(tf.constant(s, tf.int64), 2) for s in seeds])
  batch = augment.rand_augment(tf.constant(images, tf.float32), draws, magnitude=9.0, prob=0.8,
                               fill=FILL).numpy()
  for image, seed, got in zip(images, seeds, batch):
    np.testing.assert_allclose(got, _rand_augment(seed, image, prob=0.8), atol=1e-4)
  erasing = [augment.erasing_draws(tf.constant(s, tf.int64), (28, 28, 3)) for s in seeds]
  erased = augment.random_erasing(tf.constant(images, tf.float32),
                                  tf.stack([e[0] for e in erasing]),
                                  tf.stack([e[1] for e in erasing]), prob=0.5, area=(0.1, 0.3))
  for image, seed, got in zip(images, seeds, erased.numpy()):
    np.testing.assert_array_equal(got, _random_erasing(seed, image.astype(np.float32), prob=0.5))


def _random_erasing(seed, image, prob=1.0, area=(0.1, 0.3)):
  draws, noise = augment.erasing_draws(tf.constant(seed, tf.int64), image.shape)
  return augment.random_erasing(tf.constant(image)[None], draws[None], noise[None], prob=prob,
                                area=area).numpy()[0]


def test_random_erasing_fills_one_box_of_the_asked_area_with_noise():
  image = np.zeros((32, 32, 3), np.float32)
  areas = []
  for i in range(50):
    out = _random_erasing([0, i], image)
    erased = np.any(out != 0, axis=-1)
    rows, cols = np.nonzero(erased)
    box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # one rectangle
    areas.append(erased.mean())
    assert abs(float(out[erased].std()) - 1) < 0.5  # standard-normal noise
  assert 0.05 < min(areas) and max(areas) < 0.4  # the asked range, rounded to whole pixels
  np.testing.assert_array_equal(_random_erasing([0, 7], image), _random_erasing([0, 7], image))
  kept = [_random_erasing([0, i], image, prob=0.3) for i in range(100)]
  assert 15 < sum(np.any(k != 0) for k in kept) < 45  # about 30 of 100 erased
