"""RandAugment and random erasing, per example in tf.data, every choice from a stateless seed.

Written here rather than taken from Keras 3 (`keras.layers.RandAugment`, `RandomErasing`): those
layers draw from a stateful seed generator, so what an example gets depends on the order in which
tf.data's parallel map happens to run it, not on (seed, epoch, example), and a resumed run would
see other images than an uninterrupted one; Keras's RandAugment also computes all of its ops on
every image and keeps one with `where`. Here each example's seed picks its ops, and only the
picked op runs (`tf.switch_case`).

RandAugment (Cubuk et al. 2020) with the op list of its paper, cutout excluded as MobileNetV4's
recipe does. The magnitude is on the paper's scale, where 10 is the strongest setting the paper
tuned and each op's strength grows linearly with it (the V4 recipes use 15, as TF Model Garden
allows): at magnitude m, rotation up to 3m degrees, shear up to 0.03m, translation up to 4.5m% of
the side, colour/contrast/brightness/sharpness factors 1 +- 0.09m, solarize threshold
256 (1 - m/10), posterize to 8 - 0.4m bits (timm's "increasing" forms: a larger m is always
stronger). Geometric ops fill with the dataset's mean pixel, which normalizes to 0.
"""

import functools
import math

import tensorflow as tf

_RANDAUGMENT_SCALE = 10.0     # magnitude of the paper's strongest tuned setting
_ERASING_ASPECT = (0.3, 1 / 0.3)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL's ImageEnhance: factor 0 gives `degenerate`, 1 the image, beyond 1 extrapolates."""
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
  """ITU-R 601-2 luma (PIL's 'L'), repeated over the three channels."""
  luma = tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
  return tf.broadcast_to(luma, tf.shape(image))


def _smoothed(image: tf.Tensor) -> tf.Tensor:
  """PIL's SMOOTH filter inside the image; the border pixels are kept, as PIL's sharpness does."""
  kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  inner = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], 'VALID')[0]
  inside = tf.pad(tf.ones_like(inner, tf.bool), [[1, 1], [1, 1], [0, 0]])
  return tf.where(inside, tf.pad(inner, [[1, 1], [1, 1], [0, 0]]), image)


def _auto_contrast(image: tf.Tensor) -> tf.Tensor:
  """Each channel stretched to [0, 255]; a constant channel is kept."""
  low = tf.reduce_min(image, axis=[0, 1])
  high = tf.reduce_max(image, axis=[0, 1])
  spread = high - low
  scale = tf.where(spread > 0, 255.0 / tf.maximum(spread, 1e-6), 1.0)
  return tf.clip_by_value((image - tf.where(spread > 0, low, 0.0)) * scale, 0.0, 255.0)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
  """PIL's ImageOps.equalize of one channel: the histogram's cumulative sum as the lookup."""
  values = tf.cast(tf.round(channel), tf.int32)
  histogram = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
  last = tf.gather(histogram, tf.reduce_max(tf.where(histogram > 0)))
  step = (tf.reduce_sum(histogram) - tf.squeeze(last)) // 255
  lookup = (tf.cumsum(histogram, exclusive=True) + step // 2) // tf.maximum(step, 1)
  equalized = tf.cast(tf.gather(tf.clip_by_value(lookup, 0, 255), values), tf.float32)
  return tf.where(step > 0, equalized, channel)


def _equalize(image: tf.Tensor) -> tf.Tensor:
  return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def _posterize(image: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
  shift = tf.cast(8 - bits, tf.uint8)
  pixels = tf.cast(tf.round(image), tf.uint8)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift), tf.float32)


def _transform(image: tf.Tensor, matrix: list, fill: tf.Tensor) -> tf.Tensor:
  """Output pixel (x, y) reads input ((a0 x + a1 y + a2), (b0 x + b1 y + b2)), bilinear, and
  `fill` (per channel) outside the image."""
  transform = tf.reshape(tf.cast(tf.stack(matrix + [0.0, 0.0]), tf.float32), [1, 8])
  moved = tf.raw_ops.ImageProjectiveTransformV3(
      images=(image - fill)[None], transforms=transform, output_shape=tf.shape(image)[:2],
      fill_value=0.0, interpolation='BILINEAR', fill_mode='CONSTANT')
  return tf.clip_by_value(moved[0] + fill, 0.0, 255.0)


def _rotate(image, level, fill):
  angle = math.radians(30.0) * level
  cos, sin = tf.cos(angle), tf.sin(angle)
  size = tf.cast(tf.shape(image), tf.float32)
  cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
  return _transform(image, [cos, -sin, cx - cos * cx + sin * cy,
                            sin, cos, cy - sin * cx - cos * cy], fill)


def _translate(image, level, fill, axis):
  shift = 0.45 * level * tf.cast(tf.shape(image)[1 - axis], tf.float32)
  matrix = [1.0, 0.0, shift, 0.0, 1.0, 0.0] if axis == 0 else [1.0, 0.0, 0.0, 0.0, 1.0, shift]
  return _transform(image, matrix, fill)


def _shear(image, level, fill, axis):
  shear = 0.3 * level
  matrix = [1.0, shear, 0.0, 0.0, 1.0, 0.0] if axis == 0 else [1.0, 0.0, 0.0, shear, 1.0, 0.0]
  return _transform(image, matrix, fill)


# Each op: (image in [0, 255], signed level = +-magnitude / 10, fill) -> image in [0, 255].
# Unsigned ops use |level|.
RANDAUGMENT_OPS = {
    'identity': lambda image, level, fill: image,
    'auto_contrast': lambda image, level, fill: _auto_contrast(image),
    'equalize': lambda image, level, fill: _equalize(image),
    'rotate': _rotate,
    'solarize': lambda image, level, fill: tf.where(
        image < 256.0 * (1.0 - tf.abs(level)), image, 255.0 - image),
    'color': lambda image, level, fill: _blend(_grayscale(image), image, 1.0 + 0.9 * level),
    'posterize': lambda image, level, fill: _posterize(
        image, tf.maximum(8 - tf.cast(0.4 * _RANDAUGMENT_SCALE * tf.abs(level), tf.int32), 1)),
    'contrast': lambda image, level, fill: _blend(
        tf.reduce_mean(_grayscale(image)), image, 1.0 + 0.9 * level),
    'brightness': lambda image, level, fill: _blend(tf.zeros_like(image), image,
                                                    1.0 + 0.9 * level),
    'sharpness': lambda image, level, fill: _blend(_smoothed(image), image, 1.0 + 0.9 * level),
    'shear_x': functools.partial(_shear, axis=0),
    'shear_y': functools.partial(_shear, axis=1),
    'translate_x': functools.partial(_translate, axis=0),
    'translate_y': functools.partial(_translate, axis=1),
}


def rand_augment(image: tf.Tensor, seed: tf.Tensor, *, layers: int, magnitude: float,
                 prob: float, fill) -> tf.Tensor:
  """`layers` ops, each drawn uniformly from RANDAUGMENT_OPS and applied with probability `prob`
  at `magnitude` with a random sign; float32 HxWx3 in [0, 255] in and out."""
  shape = image.shape
  image = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0)
  fill = tf.constant(fill, tf.float32)
  ops = list(RANDAUGMENT_OPS.values())
  for layer in range(layers):
    draws = tf.random.stateless_uniform([3], tf.random.experimental.stateless_fold_in(seed, layer))
    index = tf.minimum(tf.cast(draws[0] * len(ops), tf.int32), len(ops) - 1)
    level = tf.where(draws[1] < 0.5, -1.0, 1.0) * magnitude / _RANDAUGMENT_SCALE
    branches = [functools.partial(op, image, level, fill) for op in ops]
    image = tf.ensure_shape(
        tf.cond(draws[2] < prob, lambda b=branches: tf.switch_case(index, b), lambda i=image: i),
        shape)
  return image


def random_erasing(image: tf.Tensor, seed: tf.Tensor, *, prob: float, area) -> tf.Tensor:
  """Random erasing (Zhong et al. 2020) of a normalized image: with probability `prob`, a box of
  a uniform fraction `area` of the image (aspect ratio log-uniform in 0.3-3.3, clipped to the
  image) gets per-pixel standard-normal noise, timm's 'pixel' mode."""
  height, width = image.shape[0], image.shape[1]
  box_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  draws = tf.random.stateless_uniform([5], box_seed)
  target = (area[0] + draws[0] * (area[1] - area[0])) * height * width
  low, high = (math.log(a) for a in _ERASING_ASPECT)
  aspect = tf.exp(low + draws[1] * (high - low))
  box_height = tf.clip_by_value(tf.round(tf.sqrt(target * aspect)), 1.0, float(height))
  box_width = tf.clip_by_value(tf.round(tf.sqrt(target / aspect)), 1.0, float(width))
  top = tf.floor(draws[2] * (height - box_height + 1))
  left = tf.floor(draws[3] * (width - box_width + 1))
  rows = tf.range(height, dtype=tf.float32)[:, None, None]
  cols = tf.range(width, dtype=tf.float32)[None, :, None]
  inside = ((rows >= top) & (rows < top + box_height) & (cols >= left)
            & (cols < left + box_width) & (draws[4] < prob))
  noise = tf.random.stateless_normal(tf.shape(image), noise_seed)
  return tf.where(inside, noise, image)
