"""MobileNetV3-Large (Howard et al. 2019, arXiv 1905.02244, Table 1), as released (torchvision).

Expansion is the expanded width in channels (the paper's 'exp size').
  python -m experiments.summary --config=configs/v3_large.py
Variants: `minimalistic` (3x3, ReLU, no SE), `small_image` (28-32 px inputs).
"""

from configs import common


def get_config(arg: str | None = None):
  config = common.get_base_config()
  config.model.blocks = (
      # block  kernel expansion out   se     activation    stride repeats
      ('conv', 3,     None,     16,   False, 'hard_swish', 2,     1),
      ('ir',   3,     16,       16,   False, 'relu',       1,     1),
      ('ir',   3,     64,       24,   False, 'relu',       2,     1),
      ('ir',   3,     72,       24,   False, 'relu',       1,     1),
      ('ir',   5,     72,       40,   True,  'relu',       2,     1),
      ('ir',   5,     120,      40,   True,  'relu',       1,     2),
      ('ir',   3,     240,      80,   False, 'hard_swish', 2,     1),
      ('ir',   3,     200,      80,   False, 'hard_swish', 1,     1),
      ('ir',   3,     184,      80,   False, 'hard_swish', 1,     2),
      ('ir',   3,     480,      112,  True,  'hard_swish', 1,     1),
      ('ir',   3,     672,      112,  True,  'hard_swish', 1,     1),
      ('ir',   5,     672,      160,  True,  'hard_swish', 2,     1),
      ('ir',   5,     960,      160,  True,  'hard_swish', 1,     2),
      ('conv', 1,     None,     960,  False, 'hard_swish', 1,     1),
  )
  config.model.head_width = 1280
  config.model.head_activation = 'hard_swish'
  common.v3_paper_recipe(config)
  return common.apply_variants(config, 'v3_large', arg,
                               ('minimalistic', 'small_image', 'fashion_mnist'))

