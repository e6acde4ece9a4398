"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381, Table 2), torchvision `mobilenet_v2` layout.

Expansion is V2's ratio t of the block's input width.
  python -m experiments.summary --config=configs/v2.py --config.model.width_multiplier=1.4
Variants: `small_image` (28-32 px inputs).
"""

from configs import common


def get_config(arg: str | None = None):
  config = common.get_base_config()
  config.model.expansion_unit = 'ratio'
  config.model.blocks = (
      # block  kernel expansion out   se     activation stride repeats
      ('conv', 3,     None,     32,   False, 'relu6',   2,     1),
      ('ir',   3,     1,        16,   False, 'relu6',   1,     1),
      ('ir',   3,     6,        24,   False, 'relu6',   2,     2),
      ('ir',   3,     6,        32,   False, 'relu6',   2,     3),
      ('ir',   3,     6,        64,   False, 'relu6',   2,     4),
      ('ir',   3,     6,        96,   False, 'relu6',   1,     3),
      ('ir',   3,     6,        160,  False, 'relu6',   2,     3),
      ('ir',   3,     6,        320,  False, 'relu6',   1,     1),
      ('conv', 1,     None,     1280, False, 'relu6',   1,     1),
  )
  common.v2_paper_recipe(config)
  return common.apply_variants(config, 'v2', arg, ('small_image', 'fashion_mnist'))

