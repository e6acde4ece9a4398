"""MobileNetV3-Small (Howard et al. 2019, arXiv 1905.02244, Table 2), as released (torchvision).

The released model differs from the paper's table: a 1024-wide head and no SE on the last conv.
  python -m experiments.summary --config=configs/v3_small.py
Variants: `minimalistic` (3x3, ReLU, no SE), `small_image` (28-32 px inputs).
"""

from configs import common


def get_config(arg: str | None = None):
  config = common.get_base_config()
  config.model.blocks = (
      # block  kernel expansion out   se     activation    stride repeats
      ('conv', 3,     None,     16,   False, 'hard_swish', 2,     1),
      ('ir',   3,     16,       16,   True,  'relu',       2,     1),
      ('ir',   3,     72,       24,   False, 'relu',       2,     1),
      ('ir',   3,     88,       24,   False, 'relu',       1,     1),
      ('ir',   5,     96,       40,   True,  'hard_swish', 2,     1),
      ('ir',   5,     240,      40,   True,  'hard_swish', 1,     2),
      ('ir',   5,     120,      48,   True,  'hard_swish', 1,     1),
      ('ir',   5,     144,      48,   True,  'hard_swish', 1,     1),
      ('ir',   5,     288,      96,   True,  'hard_swish', 2,     1),
      ('ir',   5,     576,      96,   True,  'hard_swish', 1,     2),
      ('conv', 1,     None,     576,  False, 'hard_swish', 1,     1),
  )
  config.model.head_width = 1024
  config.model.head_activation = 'hard_swish'
  common.v3_paper_recipe(config)
  return common.apply_variants(config, 'v3_small', arg,
                               ('minimalistic', 'small_image', 'fashion_mnist'))

