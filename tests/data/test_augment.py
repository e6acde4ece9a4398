"""RandAugment's ops against PIL's, and RandAugment and random erasing as pure functions of their
seed."""

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
  got = OPS[name](tf.constant(image, tf.float32), tf.constant(level), tf.constant(FILL)).numpy()
  np.testing.assert_allclose(got, want, atol=1.5, rtol=0)
  assert not np.array_equal(want, image)  # the case changes the image


@pytest.mark.parametrize('name', ['rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y'])
def test_geometric_ops_at_level_zero_keep_the_image(name):
  image = tf.constant(_image(), tf.float32)
  np.testing.assert_allclose(OPS[name](image, tf.constant(0.0), tf.constant(FILL)), image,
                             atol=1e-3)


def test_translation_and_rotation_move_the_image_and_fill_with_the_mean_pixel():
  image = _image()
  shift = 7  # pixels: level 7 / (0.45 * 28)
  got = OPS['translate_x'](tf.constant(image, tf.float32), tf.constant(shift / (0.45 * 28)),
                           tf.constant(FILL)).numpy()
  np.testing.assert_allclose(got[:, :-shift], image[:, shift:], atol=1e-3)
  np.testing.assert_allclose(got[:, -shift:], 72.9, atol=1e-3)
  half_turn = OPS['rotate'](tf.constant(image, tf.float32), tf.constant(6.0), tf.constant(FILL))
  np.testing.assert_allclose(half_turn.numpy()[::-1, ::-1], image, atol=1e-2)  # about the centre


def _rand_augment(seed, image=None, **kwargs):
  kwargs = {'layers': 2, 'magnitude': 9.0, 'prob': 1.0, 'fill': FILL, **kwargs}
  image = _image() if image is None else image
  return augment.rand_augment(tf.constant(image, tf.float32),
                              tf.constant(seed, tf.int64), **kwargs).numpy()


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
  expected = {name: op(tf.constant(image, tf.float32), tf.constant(sign), tf.constant(FILL))
              .numpy().tobytes() for name, op in OPS.items() for sign in (-1.0, 1.0)}
  seen = set()
  for i in range(200):
    out = _rand_augment([1, i], layers=1, magnitude=10.0).tobytes()
    seen.update(name for name, want in expected.items() if want == out)
  assert seen == set(OPS)


def test_random_erasing_fills_one_box_of_the_asked_area_with_noise():
  image = np.zeros((32, 32, 3), np.float32)
  areas = []
  for i in range(50):
    out = augment.random_erasing(tf.constant(image), tf.constant([0, i], tf.int64), prob=1.0,
                                 area=(0.1, 0.3)).numpy()
    erased = np.any(out != 0, axis=-1)
    rows, cols = np.nonzero(erased)
    box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # one rectangle
    areas.append(erased.mean())
    assert abs(float(out[erased].std()) - 1) < 0.5  # standard-normal noise
  assert 0.05 < min(areas) and max(areas) < 0.4  # the asked range, rounded to whole pixels
  again = augment.random_erasing(tf.constant(image), tf.constant([0, 7], tf.int64), prob=1.0,
                                 area=(0.1, 0.3)).numpy()
  np.testing.assert_array_equal(again, augment.random_erasing(
      tf.constant(image), tf.constant([0, 7], tf.int64), prob=1.0, area=(0.1, 0.3)).numpy())
  kept = [augment.random_erasing(tf.constant(image), tf.constant([0, i], tf.int64), prob=0.3,
                                 area=(0.1, 0.3)).numpy() for i in range(100)]
  assert 15 < sum(np.any(k != 0) for k in kept) < 45  # about 30 of 100 erased
