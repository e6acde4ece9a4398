"""Per-example image preprocessing in TensorFlow; every random choice comes from a stateless seed.

Seeding each example from (run seed, epoch, position) makes an epoch's augmentation a pure
function of those numbers, so a resumed run sees exactly the images an uninterrupted one would.
"""

import tensorflow as tf

INTERPOLATIONS = ('bicubic', 'bilinear')


def decode(image_bytes: tf.Tensor) -> tf.Tensor:
  """uint8 HxWx3; grayscale images are repeated over three channels."""
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _resize(image: tf.Tensor, size, method: str = 'bicubic') -> tf.Tensor:
  """Bicubic (or bilinear; antialiased) float32 resize; an image already of that size is only
  cast, which is what the resize would return at a third of the input pipeline's cost."""
  same = tf.reduce_all(tf.shape(image)[:2] == tf.convert_to_tensor(size))
  return tf.cond(same, lambda: tf.cast(image, tf.float32),
                 lambda: tf.image.resize(image, size, method=method, antialias=True))


def inception_crop(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """A random crop of 8-100% of the area, aspect ratio 3/4-4/3, resized to size x size."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, crop_size)
  return _resize(image, (size, size))


def central_crop(image: tf.Tensor, size: int, crop_fraction: float = 0.875,
                 interpolation: str = 'bicubic') -> tf.Tensor:
  """Resizes the short side to size / crop_fraction, then takes the central size x size."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = size / crop_fraction / tf.reduce_min(shape)
  resized = tf.cast(tf.math.round(shape * scale), tf.int32)
  image = _resize(image, resized, interpolation)
  top = (resized[0] - size) // 2
  left = (resized[1] - size) // 2
  return image[top:top + size, left:left + size]


def pad_and_crop(image: tf.Tensor, size: int, padding: int, seed: tf.Tensor) -> tf.Tensor:
  """Small-image augmentation: resize to size x size, zero-pad, take a random size x size crop."""
  image = _resize(image, (size, size))
  image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
  return tf.image.stateless_random_crop(image, (size, size, 3), seed=seed)


def train_image(image_bytes: tf.Tensor, seed: tf.Tensor, *, size: int, style: str,
                padding: int, flip: bool) -> tf.Tensor:
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  image = decode(image_bytes)
  if style == 'imagenet':
    image = inception_crop(image, size, crop_seed)
  else:
    image = pad_and_crop(image, size, padding, crop_seed)
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return image


def eval_image(image_bytes: tf.Tensor, *, size: int, style: str, crop_fraction: float = 0.875,
               interpolation: str = 'bicubic') -> tf.Tensor:
  image = decode(image_bytes)
  if style == 'imagenet':
    return central_crop(image, size, crop_fraction, interpolation)
  return _resize(image, (size, size), interpolation)


def normalize(image: tf.Tensor, mean, std) -> tf.Tensor:
  """(pixel - mean) / std with pixels in [0, 255]: the scaling the config names."""
  return (tf.cast(image, tf.float32) - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
