"""The width-multiplier ablation (alpha) of the MobileNet papers, for the family of --config.

  python -m experiments.sweep --config=configs/v3_small.py:fashion_mnist \
      --sweep=configs/sweeps/width_multiplier.py --workdir=DIR
`width_multiplier.py:families` runs it for V1, V2, V3-Large and V3-Small on Fashion-MNIST, so
that the report's figures compare families; `width_multiplier.py:v3_small,v2` for some of them.
"""

from mobilenet_jax.tools import hyper

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.25)
FAMILIES = ('v1', 'v2', 'v3_large', 'v3_small')


def get_sweep(arg: str | None = None):
  widths = hyper.sweep('model.width_multiplier', WIDTHS)
  if not arg:
    return widths
  families = FAMILIES if arg == 'families' else arg.split(',')
  configs = hyper.sweep('config', [f'configs/{f}.py:fashion_mnist' for f in families])
  return hyper.product(configs, widths)
