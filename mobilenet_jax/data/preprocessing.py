"""Per-example image preprocessing in TensorFlow; every random choice comes from a stateless seed.

Seeding each example from (run seed, epoch, position) makes an epoch's augmentation a pure
function of those numbers, so a resumed run sees exactly the images an uninterrupted one would.
"""

import tensorflow as tf

# 'bicubic', 'bilinear': antialiased, as PIL (torchvision, timm) resizes. 'area': a box filter
# over the pixels each output pixel covers where the image shrinks (OpenCV's INTER_AREA, which
# FFCV trains with), bilinear where it grows; antialiased too, at a fifth of their cost here.
INTERPOLATIONS = ('area', 'bicubic', 'bilinear')
# What an 'imagenet' evaluation decodes: 'window', only the central window it keeps (TF's and
# big_vision's order: crop, then resize); 'full', the whole image, resized, then cropped
# (torchvision's order, which the published weights were measured with).
EVAL_DECODES = ('window', 'full')
_WHOLE_IMAGE = ((0.0, 0.0, 1.0, 1.0),)


def decode(image_bytes: tf.Tensor) -> tf.Tensor:
  """uint8 HxWx3; grayscale images are repeated over three channels."""
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_window(image_bytes: tf.Tensor, window_fn) -> tf.Tensor:
  """The uint8 HxWx3 window `window_fn(height, width) -> (top, left, h, w)` of an image.

  Of a JPEG only that window is decoded, its shape read from the header; decoding a third of
  the pixels costs about a third. Other formats (PNG) are decoded whole and cropped: the same
  pixels either way.
  """
  def jpeg():
    height, width = tf.unstack(tf.image.extract_jpeg_shape(image_bytes)[:2])
    window = tf.stack(window_fn(height, width))
    return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

  def other():
    image = decode(image_bytes)
    top, left, h, w = window_fn(tf.shape(image)[0], tf.shape(image)[1])
    return image[top:top + h, left:left + w]

  image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
  image.set_shape([None, None, 3])
  return image


def _resize(image: tf.Tensor, size, method: str = 'bicubic') -> tf.Tensor:
  """A float32 resize by one of INTERPOLATIONS; an image already of that size is only cast,
  which is what the resize would return at a third of the input pipeline's cost."""
  size = tf.convert_to_tensor(size)
  shape = tf.shape(image)[:2]

  def resize():
    if method != 'area':
      return tf.image.resize(image, size, method=method, antialias=True)
    return tf.cond(tf.reduce_all(shape >= size),
                   lambda: tf.image.resize(image, size, method='area'),
                   lambda: tf.image.resize(image, size, method='bilinear'))

  return tf.cond(tf.reduce_all(shape == size), lambda: tf.cast(image, tf.float32), resize)


def inception_window(height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor):
  """Inception's crop window: 8-100% of the area, aspect ratio 3/4-4/3."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.stack([height, width, 3]), bounding_boxes=tf.constant([_WHOLE_IMAGE]), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  return begin[0], begin[1], crop_size[0], crop_size[1]


def inception_crop(image_bytes: tf.Tensor, size: int, seed: tf.Tensor,
                   interpolation: str = 'bicubic') -> tf.Tensor:
  """A random crop of 8-100% of the area, aspect ratio 3/4-4/3, resized to size x size; only
  the window is decoded. The window is drawn from (seed, image shape) alone."""
  image = decode_window(image_bytes, lambda h, w: inception_window(h, w, seed))
  return _resize(image, (size, size), interpolation)


def _central_window(height: tf.Tensor, width: tf.Tensor, crop_fraction: float):
  side = tf.cast(tf.math.round(tf.cast(tf.minimum(height, width), tf.float32) * crop_fraction),
                 tf.int32)
  return (height - side) // 2, (width - side) // 2, side, side


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
                padding: int, flip: bool, interpolation: str = 'area') -> tf.Tensor:
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if style == 'imagenet':
    image = inception_crop(image_bytes, size, crop_seed, interpolation)
  else:
    image = pad_and_crop(decode(image_bytes), size, padding, crop_seed)
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return image


def eval_image(image_bytes: tf.Tensor, *, size: int, style: str, crop_fraction: float = 0.875,
               interpolation: str = 'area', eval_decode: str = 'window') -> tf.Tensor:
  """'imagenet': the central crop_fraction of the short side, as a size x size image, taken
  from the decoded window (`eval_decode='window'`) or the resized whole image ('full')."""
  if style == 'imagenet' and eval_decode == 'window':
    image = decode_window(image_bytes, lambda h, w: _central_window(h, w, crop_fraction))
    return _resize(image, (size, size), interpolation)
  image = decode(image_bytes)
  if style == 'imagenet':
    return central_crop(image, size, crop_fraction, interpolation)
  return _resize(image, (size, size), interpolation)


def normalize(image: tf.Tensor, mean, std) -> tf.Tensor:
  """(pixel - mean) / std with pixels in [0, 255]: the scaling the config names."""
  return (tf.cast(image, tf.float32) - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
