"""An ImageNet-like folder of JPEG files, to measure input pipelines on: made once, deterministic.

ImageNet's training JPEGs are mostly 500 px on the long side (500x375, 500x333; a fifth portrait)
at quality ~90 with 4:2:0 chroma, and a few are grayscale. Decoding and resizing cost depends on
that and on the content: white noise compresses badly (large files, slow entropy decoding), flat
colour too well. So each image here is a smooth two-colour gradient with low-frequency shading,
a dozen shapes with hard edges, textured patches and a little sensor noise, slightly blurred as
a lens would, and encoded by Pillow (which torchvision's `ImageFolder` reads with too).

The layout is torchvision's `ImageFolder`: `<folder>/<class>/<name>.jpg`.
"""

import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DONE_FILE = 'jpeg_set.json'   # written last: a folder without it is remade
GRAYSCALE_SHARE = 0.02
PORTRAIT_SHARE = 0.2


def image_size(rng: np.random.Generator) -> tuple[int, int]:
  """(height, width) of about 500x375: long side 450-520, short side 0.66-0.8 of it."""
  long_side = int(rng.integers(450, 521))
  short_side = int(round(long_side * rng.uniform(0.66, 0.8)))
  return (long_side, short_side) if rng.random() < PORTRAIT_SHARE else (short_side, long_side)


def _smooth_noise(rng, height: int, width: int, cells: int, channels: int) -> np.ndarray:
  """Noise of about `cells` blobs across, in [0, 1]: random values on a coarse grid, upsampled."""
  grid = rng.random((max(cells * height // width, 2), cells, channels)).astype(np.float32)
  layers = [np.asarray(Image.fromarray(grid[..., c]).resize((width, height), Image.BICUBIC))
            for c in range(channels)]
  return np.clip(np.stack(layers, -1), 0, 1)


def make_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """One uint8 HxWx3 picture: gradient, shading, shapes, textures, noise, a slight blur."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (x * np.cos(angle) + y * np.sin(angle)) / np.hypot(height, width) + 0.5
  low, high = rng.uniform(0, 255, (2, 3)).astype(np.float32)
  image = low + ramp[..., None] * (high - low)
  image *= 0.6 + 0.6 * _smooth_noise(rng, height, width, 4, 1)
  canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(canvas)
  for _ in range(int(rng.integers(6, 16))):
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ry, rx = rng.uniform(10, height / 3), rng.uniform(10, width / 3)
    box = [cx - rx, cy - ry, cx + rx, cy + ry]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    kind = rng.integers(3)
    if kind == 0:
      draw.ellipse(box, fill=colour)
    elif kind == 1:
      draw.rectangle(box, fill=colour)
    else:
      corners = rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2)) * (rx, ry) + (cx, cy)
      draw.polygon([tuple(p) for p in corners], fill=colour)
  image = np.asarray(canvas).astype(np.float32)
  # Texture (foliage, fabric, fur): noise at several scales, strong in some regions only.
  # Mostly in brightness, as in photographs, where chroma varies more slowly.
  texture = sum(_smooth_noise(rng, height, width, width // step, 1) - 0.5 for step in (2, 5, 16))
  texture = texture + 0.3 * (_smooth_noise(rng, height, width, width // 3, 3) - 0.5)
  image += 160 * texture * _smooth_noise(rng, height, width, 3, 1)
  image += rng.normal(0, 5, image.shape)
  canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
  return np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.5)))


def _paths(folder: str, num_images: int, num_classes: int) -> list[str]:
  return [os.path.join(folder, f'class_{i % num_classes:03d}', f'image_{i:06d}.jpg')
          for i in range(num_images)]


def write(folder: str, num_images: int, *, num_classes: int = 10, seed: int = 0,
          quality: int = 90) -> list[str]:
  """The paths of the set in `folder`, made first unless a complete one of these numbers is there.

  Image i depends on (seed, i) alone: the same arguments give the same files, byte for byte.
  """
  recipe = {'num_images': num_images, 'num_classes': num_classes, 'seed': seed,
            'quality': quality}
  paths = _paths(folder, num_images, num_classes)
  done = os.path.join(folder, DONE_FILE)
  if os.path.exists(done):
    with open(done) as f:
      if json.load(f) == recipe:
        return paths
  os.makedirs(folder, exist_ok=True)
  if os.path.exists(done):
    os.remove(done)
  for i, path in enumerate(paths):
    rng = np.random.default_rng([seed, i])
    pixels = make_image(rng, *image_size(rng))
    picture = Image.fromarray(pixels)
    if rng.random() < GRAYSCALE_SHARE:
      picture = picture.convert('L')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    picture.save(path, format='JPEG', quality=quality)
  with open(done, 'w') as f:
    json.dump(recipe, f)
  return paths
