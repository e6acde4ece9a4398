r"""MobileNetV4-Conv-M on ImageNet: Qin et al. 2024 (arXiv 2404.10518), Table 12, as built by timm
(`mobilenetv4_conv_medium`) and TF Model Garden: 9,715,512 params, 1080.2M MAdds at 256 px
(paper: 79.9% top-1; timm's weights 79.92%).

Recipe (Tab. 10): AdamW (beta1 0.9, epsilon 1e-7), learning rate 0.004 at batch 4096, 5 warmup
epochs, cosine to 0 over 500 epochs, weight decay 0.1, dropout 0.2, stochastic depth 0.075,
RandAugment 2 ops at magnitude 15 with probability 0.7, trained at 256 px. Not run here (no
ImageNet):
  python -m experiments.train --config=configs/v4_conv_medium.py --workdir=DIR --config.data_dir=...

timm's weights: `--config.init_from=timm:PATH`. Variants: `small_image`, `fashion_mnist` (not run
here in full):
  python -m experiments.train --config=configs/v4_conv_medium.py:fashion_mnist --workdir=runs/v4m
"""

from configs import common


def get_config(arg: str | None = None):
  config = common.get_base_config()
  common.v4_model(config)
  config.model.blocks = (
      # block   kernel  expansion out  se     activation stride repeats
      ('conv',  3,      None,     32,  False, 'relu',    2,     1),  # stem
      ('fused', 3,      4,        48,  False, 'relu',    2,     1),  # FusedIB
      ('uib',   (3, 5), 4,        80,  False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (3, 3), 2,        80,  False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 5), 6,        160, False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (3, 3), 4,        160, False, 'relu',    1,     2),  # ExtraDW
      ('uib',   (3, 5), 4,        160, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 3), 4,        160, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 0), 4,        160, False, 'relu',    1,     1),  # ConvNeXt-like
      ('uib',   (0, 0), 2,        160, False, 'relu',    1,     1),  # FFN
      ('uib',   (3, 0), 4,        160, False, 'relu',    1,     1),  # ConvNeXt-like
      ('uib',   (5, 5), 6,        256, False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (5, 5), 4,        256, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 5), 4,        256, False, 'relu',    1,     2),  # ExtraDW
      ('uib',   (0, 0), 4,        256, False, 'relu',    1,     1),  # FFN
      ('uib',   (3, 0), 4,        256, False, 'relu',    1,     1),  # ConvNeXt-like
      ('uib',   (3, 5), 2,        256, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (5, 5), 4,        256, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (0, 0), 4,        256, False, 'relu',    1,     2),  # FFN
      ('uib',   (5, 0), 2,        256, False, 'relu',    1,     1),  # ConvNeXt-like
      ('conv',  1,      None,     960, False, 'relu',    1,     1),
  )
  config.input.image_size = 256
  common.v4_paper_recipe(config, batch_size=4096, learning_rate=0.004, num_epochs=500,
                         warmup_epochs=5, weight_decay=0.1, adam_b1=0.9, epsilon=1e-7,
                         dropout_rate=0.2, drop_path_rate=0.075, randaugment=(0.7, 2, 15.0))
  return common.apply_variants(config, 'v4_conv_medium', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long'))
