"""A learning-rate x weight-decay grid (3 x 3 runs) around the :fashion_mnist recipe (AdamW,
learning rate 0.004 for 128 images, weight decay 0.05); pass your own values with an ImageNet one.
"""

from mobilenet_jax.tools import hyper


def get_sweep(arg: str | None = None):
  del arg
  return hyper.product(hyper.sweep('learning_rate', (0.002, 0.004, 0.008)),
                       hyper.sweep('weight_decay', (0.01, 0.05, 0.1)))
