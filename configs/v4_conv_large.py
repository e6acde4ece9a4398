r"""MobileNetV4-Conv-L on ImageNet: Qin et al. 2024 (arXiv 2404.10518), Table 13, as built by timm
(`mobilenetv4_conv_large`) and TF Model Garden: 32,590,864 params, 6376.2M MAdds at 384 px
(paper: 82.9% top-1; timm's weights 82.97%). Every UIB and the FusedIB expand 4x.

Recipe (Tab. 10): AdamW (beta1 0.9, epsilon 1e-7), learning rate 0.004 at batch 16384, 20
warmup epochs, cosine to 0 over 500 epochs, weight decay 0.2, dropout 0.2, stochastic depth
0.35, RandAugment 2 ops at magnitude 15 (probability 1), Mixup 0.8 / CutMix 1.0 on 30% of the
batches, trained at 384 px. Not run here (no ImageNet):
  python -m experiments.train --config=configs/v4_conv_large.py --workdir=DIR --config.data_dir=...

timm's weights: `--config.init_from=timm:PATH`. Variants: `small_image`, `fashion_mnist` (not run
here in full).
"""

from configs import common


def get_config(arg: str | None = None):
  config = common.get_base_config()
  common.v4_model(config)
  config.model.blocks = (
      # block   kernel  expansion out  se     activation stride repeats
      ('conv',  3,      None,     24,  False, 'relu',    2,     1),  # stem
      ('fused', 3,      4,        48,  False, 'relu',    2,     1),  # FusedIB
      ('uib',   (3, 5), 4,        96,  False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (3, 3), 4,        96,  False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 5), 4,        192, False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (3, 3), 4,        192, False, 'relu',    1,     3),  # ExtraDW
      ('uib',   (3, 5), 4,        192, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (5, 3), 4,        192, False, 'relu',    1,     5),  # ExtraDW
      ('uib',   (3, 0), 4,        192, False, 'relu',    1,     1),  # ConvNeXt-like
      ('uib',   (5, 5), 4,        512, False, 'relu',    2,     4),  # ExtraDW
      ('uib',   (5, 0), 4,        512, False, 'relu',    1,     1),  # ConvNeXt-like
      ('uib',   (5, 3), 4,        512, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (5, 0), 4,        512, False, 'relu',    1,     2),  # ConvNeXt-like
      ('uib',   (5, 3), 4,        512, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (5, 5), 4,        512, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (5, 0), 4,        512, False, 'relu',    1,     3),  # ConvNeXt-like
      ('conv',  1,      None,     960, False, 'relu',    1,     1),
  )
  config.input.image_size = 384
  common.v4_paper_recipe(config, batch_size=16384, learning_rate=0.004, num_epochs=500,
                         warmup_epochs=20, weight_decay=0.2, adam_b1=0.9, epsilon=1e-7,
                         dropout_rate=0.2, drop_path_rate=0.35, randaugment=(1.0, 2, 15.0),
                         mix_prob=0.3)
  return common.apply_variants(config, 'v4_conv_large', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long'))
