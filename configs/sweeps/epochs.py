"""Recipe length: test top-1 against training time, the schedule stretched to each length.

  python -m experiments.sweep --config=configs/v4_conv_small.py:fashion_mnist_long \
      --sweep=configs/sweeps/epochs.py --workdir=DIR

The long run comes first, so that a sweep cut short still holds the headline result; the report's
time.png then shows what each extra minute of training buys. `epochs.py:2,5,12` for other lengths.
docs/epochs/ holds this sweep as run with the recipe's earlier version (total stride 16, 100
epochs; commit 400b105), before the long recipe moved to stride 8 and 40 epochs.
"""

from mobilenet_jax.tools import hyper

EPOCHS = (40, 2, 5, 12)  # the recipe's own length first


def get_sweep(arg: str | None = None):
  epochs = tuple(float(e) for e in arg.split(',')) if arg else EPOCHS
  return hyper.sweep('num_epochs', epochs)
