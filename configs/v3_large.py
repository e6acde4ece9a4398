r"""MobileNetV3-Large on ImageNet: Howard et al. 2019 (arXiv 1905.02244), Table 1, as released
(torchvision's `mobilenet_v3_large`): 5,483,032 params, 216.6M MAdds at 224 px (paper: 75.2%).

Expansion is the expanded width in channels (the paper's 'exp size'). Recipe: the V3 paper's
(`common.v3_paper_recipe`: RMSProp, learning rate 0.1 at batch 4096 decayed x0.01 every 3 epochs,
L2 1e-5, dropout 0.2, weight EMA 0.9999). Not run here (no ImageNet).

  python -m experiments.train --config=configs/v3_large.py --workdir=DIR --config.data_dir=...

`:fashion_mnist`, offline at 28 px: the 21-epoch recipe of `common.fashion_mnist`; not run here
in full (docs/fashion_mnist_runs.md lists short runs on a 2-core CPU).
  python -m experiments.train --config=configs/v3_large.py:fashion_mnist --workdir=runs/v3l

Variants: `minimalistic` (3x3, ReLU, no SE), `small_image` (28-32 px inputs), `fashion_mnist`.

`:modern`: a modern ImageNet recipe (`common.modern`: AdamW, cosine over 500 epochs,
RandAugment, EMA), meant to reproduce the MobileNetV4 paper's retrained V3-Large: 75.5% top-1
(paper 75.2%). Not run here:
  python -m experiments.train --config=configs/v3_large.py:modern --workdir=DIR --config.data_dir=...
`:fashion_mnist_long`: 40 clipped Fashion-MNIST epochs at total stride 8 with RandAugment and
random erasing (`common.fashion_mnist_long`). Run here for 27 epochs, the 2 hours' worth on a
2-core CPU (246 img/s): 94.78% (EMA 94.77%) after 108.7 min of training, level with V4 Conv-S.
  python -m experiments.train --config=configs/v3_large.py:fashion_mnist_long \
      --workdir=runs/v3l_long --config.num_epochs=27
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
                               ('minimalistic', 'small_image', 'fashion_mnist',
                                'fashion_mnist_long', 'modern'))

