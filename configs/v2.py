r"""MobileNetV2 on ImageNet: Sandler et al. 2018 (arXiv 1801.04381), Table 2, in the layout of
torchvision's `mobilenet_v2`: 3,504,872 params, 300.8M MAdds at 224 px (paper: 72.0% top-1).

Expansion is V2's ratio t of the block's input width. Recipe: the V2 paper's
(`common.v2_paper_recipe`: RMSProp, learning rate 0.045 at batch 96 decayed x0.98 every epoch,
L2 4e-5). Not run here (no ImageNet).

  python -m experiments.train --config=configs/v2.py --workdir=DIR --config.data_dir=...
  python -m experiments.summary --config=configs/v2.py --config.model.width_multiplier=1.4

`:fashion_mnist`, offline at 28 px: the 21-epoch recipe of `common.fashion_mnist`; not run here
in full (docs/fashion_mnist_runs.md lists short runs on a 2-core CPU).
  python -m experiments.train --config=configs/v2.py:fashion_mnist --workdir=runs/v2

Variants: `small_image` (28-32 px inputs), `fashion_mnist`.

`:modern`: a modern ImageNet recipe (`common.modern`: AdamW, cosine over 500 epochs,
RandAugment, EMA), meant to reproduce the MobileNetV4 paper's retrained V2: 73.4% top-1
(paper 72.0%). Not run here:
  python -m experiments.train --config=configs/v2.py:modern --workdir=DIR --config.data_dir=...
`:fashion_mnist_long`: 40 clipped Fashion-MNIST epochs at total stride 8 with RandAugment and
random erasing (`common.fashion_mnist_long`); not run here for V2.
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
  return common.apply_variants(config, 'v2', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long', 'modern'))

