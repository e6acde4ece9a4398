r"""MobileNetV1 on ImageNet: Howard et al. 2017 (arXiv 1704.04861), Table 1, in the layout of
Keras's `MobileNet`: 4,231,976 params, 568.7M MAdds at 224 px (paper: 70.6% top-1).

The V1 paper names RMSProp with little regularisation but no schedule, so V1 trains with the
RMSProp recipe of `common.get_base_config`, that of the MobileNet reference trainings:
TensorFlow's RMSProp, learning rate 0.016 per 256 images decayed x0.973 every 2 epochs after 5
warmup epochs, 350 epochs, L2 2e-5, label smoothing 0.1, weight EMA 0.9999. Not run here (no
ImageNet):
  python -m experiments.train --config=configs/v1.py --workdir=DIR --config.data_dir=...

The paper's multipliers are fields (`--config.model.width_multiplier=0.5`,
`--config.input.image_size=160`); `python -m experiments.summary --all` prints its grid.
Variants: `small_image` (28-32 px inputs) and `fashion_mnist`, Fashion-MNIST at 28 px offline
with the 21-epoch recipe of `common.fashion_mnist`, not run here in full for V1
(docs/fashion_mnist_runs.md lists short runs):
  python -m experiments.train --config=configs/v1.py:fashion_mnist --workdir=runs/v1

`:modern`: a modern ImageNet recipe (`common.modern`: AdamW, cosine over 500 epochs,
RandAugment, EMA), meant to reproduce the MobileNetV4 paper's retrained V1: 74.0% top-1
(paper 70.6%). Not run here:
  python -m experiments.train --config=configs/v1.py:modern --workdir=DIR --config.data_dir=...
`:fashion_mnist_long`: 40 clipped Fashion-MNIST epochs at total stride 8 with RandAugment and
random erasing (`common.fashion_mnist_long`); not run here for V1.
"""

from configs import common


def get_config(arg: str | None = None):
  config = common.get_base_config()
  config.model.blocks = (
      # block  kernel expansion out   se     activation stride repeats
      ('conv', 3,     None,     32,   False, 'relu6',   2,     1),
      ('ds',   3,     None,     64,   False, 'relu6',   1,     1),
      ('ds',   3,     None,     128,  False, 'relu6',   2,     1),
      ('ds',   3,     None,     128,  False, 'relu6',   1,     1),
      ('ds',   3,     None,     256,  False, 'relu6',   2,     1),
      ('ds',   3,     None,     256,  False, 'relu6',   1,     1),
      ('ds',   3,     None,     512,  False, 'relu6',   2,     1),
      ('ds',   3,     None,     512,  False, 'relu6',   1,     5),
      ('ds',   3,     None,     1024, False, 'relu6',   2,     1),
      ('ds',   3,     None,     1024, False, 'relu6',   1,     1),
  )
  return common.apply_variants(config, 'v1', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long', 'modern'))
