"""The resolution-multiplier ablation (rho): input sizes of the papers, or around 28 px.

  --sweep=configs/sweeps/resolution.py             224, 192, 160, 128 (ImageNet configs)
  --sweep=configs/sweeps/resolution.py:small       20, 24, 28, 32 (the :fashion_mnist variants)
"""

from mobilenet_jax.tools import hyper

SIZES = {'imagenet': (224, 192, 160, 128), 'small': (20, 24, 28, 32)}


def get_sweep(arg: str | None = None):
  return hyper.sweep('input.image_size', SIZES[arg or 'imagenet'])
