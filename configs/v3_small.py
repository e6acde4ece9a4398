r"""MobileNetV3-Small on ImageNet: Howard et al. 2019 (arXiv 1905.02244), Table 2, as released
(torchvision's `mobilenet_v3_small`): 2,542,856 params, 56.5M MAdds at 224 px (paper: 67.4%).

The released model differs from the paper's table: a 1024-wide head and no SE on the last conv.
Recipe: the V3 paper's (`common.v3_paper_recipe`). Not run here (no ImageNet).

  python -m experiments.train --config=configs/v3_small.py --workdir=DIR --config.data_dir=...

`:fashion_mnist`: Fashion-MNIST at 28 px from the offline Debian files, 21 epochs of AdamW
(`common.fashion_mnist`). On a 2-core CPU, under an earlier recipe (17 epochs without clipping):
92.96% test top-1 (EMA 92.69%) in 18 min 52 s of wall time, 976 images/s (93.07% in 14 min 53 s
on a faster machine of the kind); the README's main job is now V4 Conv-S under the same recipe
(`configs/v4_conv_small.py`).
  python -m experiments.train --config=configs/v3_small.py:fashion_mnist --workdir=runs/v3s

Variants: `minimalistic` (3x3, ReLU, no SE), `small_image` (28-32 px inputs), `fashion_mnist`.

`:modern`: a modern ImageNet recipe (`common.modern`: AdamW, cosine over 500 epochs,
RandAugment, EMA); the V4 paper retrained V1, V2 and V3-Large with such recipes, not
V3-Small. Not run here:
  python -m experiments.train --config=configs/v3_small.py:modern --workdir=DIR --config.data_dir=...
`:fashion_mnist_long`: 40 clipped Fashion-MNIST epochs at total stride 8 with RandAugment and
random erasing (`common.fashion_mnist_long`); not run here for V3-Small.
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
                               ('minimalistic', 'small_image', 'fashion_mnist',
                                'fashion_mnist_long', 'modern'))

