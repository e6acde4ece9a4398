"""Per-example preprocessing: JPEG windows decoded alone give the pixels of a whole decode."""

import numpy as np
import pytest
import tensorflow as tf

from mobilenet_jax.data import preprocessing


def _picture(height, width, channels=3, seed=0):
  """Smooth content with edges, as photographs have (JPEG's blocks are then not all alike)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  image = (x[..., None] * rng.uniform(0, 1, channels) + y[..., None] * rng.uniform(0, 1, channels))
  image += 60 * (((x // 7) + (y // 11)) % 2)[..., None]
  return np.clip(image % 256, 0, 255).astype(np.uint8)


def _jpeg(pixels):
  return tf.io.encode_jpeg(pixels, quality=90)


def _whole_then_slice(image_bytes, seed, size, interpolation='bicubic'):
  """The Inception crop as it was: the whole image decoded, then the window sliced out."""
  image = preprocessing.decode(image_bytes)
  top, left, h, w = preprocessing.inception_window(tf.shape(image)[0], tf.shape(image)[1], seed)
  return preprocessing._resize(image[top:top + h, left:left + w], (size, size), interpolation)


@pytest.mark.parametrize('shape', [(75, 100, 3), (100, 67, 1)])  # landscape; portrait grayscale
def test_a_jpeg_window_decoded_alone_is_the_whole_decode_inside_its_border(shape):
  """libjpeg's chroma upsampling sees no neighbour beyond a window decoded alone, so the
  window's outermost pixels may differ by a few levels; every pixel inside them is equal."""
  image_bytes = _jpeg(_picture(*shape))
  whole = preprocessing.decode(image_bytes)
  for i in range(6):
    seed = tf.constant([7, i], tf.int64)
    top, left, h, w = (int(v) for v in preprocessing.inception_window(*whole.shape[:2], seed))
    window = preprocessing.decode_window(image_bytes, lambda *_: (top, left, h, w))
    assert window.shape == (h, w, 3) and window.dtype == tf.uint8
    sliced = whole[top:top + h, left:left + w]
    np.testing.assert_array_equal(window[1:-1, 1:-1], sliced[1:-1, 1:-1])
    assert np.abs(np.asarray(window, int) - np.asarray(sliced, int)).mean() < 1
    for interpolation in ('bicubic', 'area'):
      got = preprocessing.inception_crop(image_bytes, 32, seed, interpolation)
      assert got.shape == (32, 32, 3) and got.dtype == tf.float32
      want = _whole_then_slice(image_bytes, seed, 32, interpolation)
      np.testing.assert_allclose(got[2:-2, 2:-2], want[2:-2, 2:-2], atol=1e-3)
  if shape[-1] == 1:  # grayscale comes out as three equal channels
    np.testing.assert_array_equal(got[..., 0], got[..., 2])


def test_png_falls_back_to_the_whole_decode_with_the_same_window():
  pixels = _picture(60, 90)
  png, jpeg = tf.io.encode_png(pixels), _jpeg(pixels)
  seed = tf.constant([3, 1], tf.int64)
  np.testing.assert_array_equal(preprocessing.inception_crop(png, 24, seed),
                                _whole_then_slice(png, seed, 24))
  # The window depends on the shape and the seed alone: the PNG's and the JPEG's crops agree up
  # to JPEG's loss.
  difference = np.abs(preprocessing.inception_crop(png, 24, seed)
                      - preprocessing.inception_crop(jpeg, 24, seed))
  assert difference.mean() < 4


def test_the_small_style_gives_the_images_it_gave_before():
  """Fashion-MNIST's 28 px PNGs: pad and crop of the whole decode, then the flip, as before the
  JPEG windows (the quick start's figures depend on these images)."""
  for i in range(4):
    png = tf.io.encode_png(_picture(28, 28, 1, seed=i))
    seed = tf.constant([11, i], tf.int64)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    want = tf.image.stateless_random_flip_left_right(
        preprocessing.pad_and_crop(preprocessing.decode(png), 28, 2, crop_seed), flip_seed)
    got = preprocessing.train_image(png, seed, size=28, style='small', padding=2, flip=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        preprocessing.eval_image(png, size=28, style='small'), tf.cast(
            preprocessing.decode(png), tf.float32))


def test_area_averages_where_it_shrinks_and_interpolates_where_it_grows():
  image = tf.constant(_picture(8, 8), tf.float32)
  halved = preprocessing._resize(image, (4, 4), 'area')
  np.testing.assert_allclose(halved, tf.nn.avg_pool2d(image[None], 2, 2, 'VALID')[0], atol=1e-4)
  doubled = preprocessing._resize(image, (16, 16), 'area')
  np.testing.assert_allclose(doubled, tf.image.resize(image, (16, 16), 'bilinear'))


@pytest.mark.parametrize('interpolation', ['area', 'bicubic'])
def test_eval_of_the_decoded_window_sees_what_the_resized_whole_image_shows(interpolation):
  """Crop-then-resize and resize-then-crop keep the same central window: they differ only by
  the resize filter at the window's edge and sub-pixel rounding."""
  image_bytes = _jpeg(_picture(150, 200))
  window, full = (preprocessing.eval_image(image_bytes, size=64, style='imagenet',
                                           interpolation=interpolation, eval_decode=decode)
                  for decode in ('window', 'full'))
  assert window.shape == full.shape == (64, 64, 3)
  difference = np.abs(np.asarray(window) - np.asarray(full))
  assert np.median(difference) < 6 and difference.mean() < 12
