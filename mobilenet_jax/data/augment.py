"""RandAugment and random erasing on batches in tf.data, every choice from a stateless seed.

Written here rather than taken from Keras 3 (`keras.layers.RandAugment`, `RandomErasing`): those
layers draw from a stateful seed generator, so what an example gets depends on the order in which
tf.data's parallel map happens to run it, not on (seed, epoch, example), and a resumed run would
see other images than an uninterrupted one; Keras's RandAugment also computes all of its ops on
every image and keeps one with `where`. Here each example's seed draws its choices in the
per-example map (`randaugment_draws`, `erasing_draws`: a few numbers), and the images are changed
a batch at a time: the batch is split by drawn op (`tf.dynamic_partition`), each op runs once on
its share and the shares are stitched back. An image's result depends on its own draws only, so
a batch on one host or its shards on several give the same images, while the ops cost a handful
of TensorFlow calls a batch instead of a `tf.switch_case` an image (per example, RandAugment
took over 0.5 ms of a core per 28 px image and the input wait of a 2-core run rose to 15%).

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


def _per_image(values: tf.Tensor) -> tf.Tensor:
  """[n] -> [n, 1, 1, 1], to broadcast one value per image over NHWC."""
  return tf.reshape(values, [-1, 1, 1, 1])


def _blend(degenerate: tf.Tensor, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL's ImageEnhance: factor 0 gives `degenerate`, 1 the image, beyond 1 extrapolates."""
  return tf.clip_by_value(degenerate + _per_image(factor) * (images - degenerate), 0.0, 255.0)


def _grayscale(images: tf.Tensor) -> tf.Tensor:
  """ITU-R 601-2 luma (PIL's 'L'), repeated over the three channels."""
  luma = tf.reduce_sum(images * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
  return tf.broadcast_to(luma, tf.shape(images))


def _smoothed(images: tf.Tensor) -> tf.Tensor:
  """PIL's SMOOTH filter inside the image; the border pixels are kept, as PIL's sharpness does.
  (Nine shifted slices: TensorFlow's convolutions return a wrong shape for an empty batch.)"""
  height, width = images.shape[1], images.shape[2]
  inner = sum((5.0 if (dy, dx) == (1, 1) else 1.0) * images[:, dy:height - 2 + dy,
                                                            dx:width - 2 + dx]
              for dy in range(3) for dx in range(3)) / 13.0
  border = [[0, 0], [1, 1], [1, 1], [0, 0]]
  inside = tf.pad(tf.ones_like(inner, tf.bool), border)
  return tf.where(inside, tf.pad(inner, border), images)


def _auto_contrast(images: tf.Tensor) -> tf.Tensor:
  """Each channel stretched to [0, 255]; a constant channel is kept."""
  low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
  high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
  spread = high - low
  scale = tf.where(spread > 0, 255.0 / tf.maximum(spread, 1e-6), 1.0)
  return tf.clip_by_value((images - tf.where(spread > 0, low, 0.0)) * scale, 0.0, 255.0)


def _equalize(images: tf.Tensor) -> tf.Tensor:
  """PIL's ImageOps.equalize of each channel: the histogram's cumulative sum as the lookup."""
  shape = tf.shape(images)
  channels = tf.transpose(images, [0, 3, 1, 2])
  values = tf.reshape(tf.cast(tf.round(channels), tf.int32), [shape[0] * shape[3], -1])
  histogram = tf.math.bincount(values, minlength=256, maxlength=256, axis=-1)
  last_bin = 255 - tf.argmax(tf.reverse(histogram, [1]) > 0, axis=1, output_type=tf.int32)
  last = tf.gather(histogram, last_bin, batch_dims=1)
  step = (tf.reduce_sum(histogram, axis=1) - last) // 255
  lookup = ((tf.cumsum(histogram, axis=1, exclusive=True) + (step // 2)[:, None])
            // tf.maximum(step, 1)[:, None])
  equalized = tf.cast(tf.gather(tf.clip_by_value(lookup, 0, 255), values, batch_dims=1),
                      tf.float32)
  equalized = tf.reshape(equalized, tf.shape(channels))
  # A channel that is not equalized keeps its exact (unrounded) values.
  kept = tf.reshape(step > 0, [shape[0], shape[3], 1, 1])
  return tf.transpose(tf.where(kept, equalized, channels), [0, 2, 3, 1])


def _posterize(images: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
  shift = tf.cast(_per_image(8 - bits), tf.uint8)
  pixels = tf.cast(tf.round(images), tf.uint8)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift), tf.float32)


def _transform(images: tf.Tensor, matrix: list, fill: tf.Tensor) -> tf.Tensor:
  """Output pixel (x, y) reads input ((a0 x + a1 y + a2), (b0 x + b1 y + b2)), bilinear, and
  `fill` (per channel) outside the image; each entry of `matrix` one value per image."""
  count = tf.shape(images)[0]
  entries = [tf.broadcast_to(tf.cast(m, tf.float32), [count]) for m in matrix]
  transforms = tf.stack(entries + [tf.zeros([count])] * 2, axis=1)
  moved = tf.raw_ops.ImageProjectiveTransformV3(
      images=images - fill, transforms=transforms, output_shape=tf.shape(images)[1:3],
      fill_value=0.0, interpolation='BILINEAR', fill_mode='CONSTANT')
  return tf.clip_by_value(moved + fill, 0.0, 255.0)


def _rotate(images, level, fill):
  angle = math.radians(30.0) * level
  cos, sin = tf.cos(angle), tf.sin(angle)
  size = tf.cast(tf.shape(images)[1:3], tf.float32)
  cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
  return _transform(images, [cos, -sin, cx - cos * cx + sin * cy,
                             sin, cos, cy - sin * cx - cos * cy], fill)


def _translate(images, level, fill, axis):
  shift = 0.45 * level * tf.cast(tf.shape(images)[2 - axis], tf.float32)
  matrix = [1.0, 0.0, shift, 0.0, 1.0, 0.0] if axis == 0 else [1.0, 0.0, 0.0, 0.0, 1.0, shift]
  return _transform(images, matrix, fill)


def _shear(images, level, fill, axis):
  shear = 0.3 * level
  matrix = [1.0, shear, 0.0, 0.0, 1.0, 0.0] if axis == 0 else [1.0, 0.0, 0.0, shear, 1.0, 0.0]
  return _transform(images, matrix, fill)


# Each op: (images NHWC in [0, 255], signed level = +-magnitude / 10 per image, fill) -> images
# in [0, 255]. Unsigned ops use |level|. The identity comes first: it is what an unapplied layer
# takes.
RANDAUGMENT_OPS = {
    'identity': lambda images, level, fill: images,
    'auto_contrast': lambda images, level, fill: _auto_contrast(images),
    'equalize': lambda images, level, fill: _equalize(images),
    'rotate': _rotate,
    'solarize': lambda images, level, fill: tf.where(
        images < _per_image(256.0 * (1.0 - tf.abs(level))), images, 255.0 - images),
    'color': lambda images, level, fill: _blend(_grayscale(images), images, 1.0 + 0.9 * level),
    'posterize': lambda images, level, fill: _posterize(
        images, tf.maximum(8 - tf.cast(0.4 * _RANDAUGMENT_SCALE * tf.abs(level), tf.int32), 1)),
    'contrast': lambda images, level, fill: _blend(
        tf.reduce_mean(_grayscale(images), axis=[1, 2, 3], keepdims=True), images,
        1.0 + 0.9 * level),
    'brightness': lambda images, level, fill: _blend(tf.zeros_like(images), images,
                                                     1.0 + 0.9 * level),
    'sharpness': lambda images, level, fill: _blend(_smoothed(images), images,
                                                    1.0 + 0.9 * level),
    'shear_x': functools.partial(_shear, axis=0),
    'shear_y': functools.partial(_shear, axis=1),
    'translate_x': functools.partial(_translate, axis=0),
    'translate_y': functools.partial(_translate, axis=1),
}


def randaugment_draws(seed: tf.Tensor, layers: int) -> tf.Tensor:
  """One example's choices, [layers, 3] uniforms: the op, the sign of its level, whether to
  apply it."""
  if not layers:
    return tf.zeros([0, 3])
  return tf.stack([tf.random.stateless_uniform(
      [3], tf.random.experimental.stateless_fold_in(seed, layer)) for layer in range(layers)])


def rand_augment(images: tf.Tensor, draws: tf.Tensor, *, magnitude: float, prob: float,
                 fill) -> tf.Tensor:
  """For each image and layer, the op its draws pick from RANDAUGMENT_OPS, applied with
  probability `prob` at `magnitude` with a random sign. images: float32 NHWC in [0, 255] (in and
  out); draws: [N, layers, 3] from `randaugment_draws`."""
  shape = images.shape
  images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)
  fill = tf.constant(fill, tf.float32)
  ops = list(RANDAUGMENT_OPS.values())
  positions = tf.range(tf.shape(images)[0])
  for layer in range(draws.shape[1]):
    choice = draws[:, layer]
    index = tf.minimum(tf.cast(choice[:, 0] * len(ops), tf.int32), len(ops) - 1)
    index = tf.where(choice[:, 2] < prob, index, 0)  # unapplied: the identity
    level = tf.where(choice[:, 1] < 0.5, -1.0, 1.0) * magnitude / _RANDAUGMENT_SCALE
    shares = zip(tf.dynamic_partition(images, index, len(ops)),
                 tf.dynamic_partition(level, index, len(ops)), ops)
    changed = [op(share, share_level, fill) for share, share_level, op in shares]
    images = tf.ensure_shape(
        tf.dynamic_stitch(tf.dynamic_partition(positions, index, len(ops)), changed), shape)
  return images


def erasing_draws(seed: tf.Tensor, shape) -> tuple[tf.Tensor, tf.Tensor]:
  """One example's random erasing: 5 uniforms (area, aspect, top, left, whether) and the noise
  (standard normal, of the image's shape)."""
  box_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  return (tf.random.stateless_uniform([5], box_seed),
          tf.random.stateless_normal(shape, noise_seed))


def random_erasing(images: tf.Tensor, draws: tf.Tensor, noise: tf.Tensor, *, prob: float,
                   area) -> tf.Tensor:
  """Random erasing (Zhong et al. 2020) of normalized NHWC images: with probability `prob`, a box
  of a uniform fraction `area` of the image (aspect ratio log-uniform in 0.3-3.3, clipped to the
  image) gets per-pixel standard-normal noise, timm's 'pixel' mode. draws [N, 5] and noise from
  `erasing_draws`."""
  height, width = images.shape[1], images.shape[2]
  draws = [_per_image(d) for d in tf.unstack(draws, axis=1)]
  target = (area[0] + draws[0] * (area[1] - area[0])) * height * width
  low, high = (math.log(a) for a in _ERASING_ASPECT)
  aspect = tf.exp(low + draws[1] * (high - low))
  box_height = tf.clip_by_value(tf.round(tf.sqrt(target * aspect)), 1.0, float(height))
  box_width = tf.clip_by_value(tf.round(tf.sqrt(target / aspect)), 1.0, float(width))
  top = tf.floor(draws[2] * (height - box_height + 1))
  left = tf.floor(draws[3] * (width - box_width + 1))
  rows = tf.range(height, dtype=tf.float32)[None, :, None, None]
  cols = tf.range(width, dtype=tf.float32)[None, None, :, None]
  inside = ((rows >= top) & (rows < top + box_height) & (cols >= left)
            & (cols < left + box_width) & (draws[4] < prob))
  return tf.where(inside, noise, images)
