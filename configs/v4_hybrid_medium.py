r"""MobileNetV4-Hybrid-M on ImageNet: Qin et al. 2024 (arXiv 2404.10518), Table 14, as released:
timm's `mobilenetv4_hybrid_medium` and TF Model Garden, whose table differs from the paper's
(an FFN and an ExtraDW before the first attention block, the order of the last stage's blocks);
timm's weights were trained on the code, so the code's table is the one here: 11,074,648 params,
1271.2M MAdds at 256 px, 41.9M of them in the attention matmuls (paper: 80.7% top-1; timm's
`.ix` weights 81.48%).

Mobile MQA rows: 4 query heads, one key and value head of width 64; in the 16x16 stage keys and
values are first down-sampled by a stride-2 3x3 depthwise conv + BN. Layer scale (init 1e-5) on
every UIB and MQA branch. Recipe (Tab. 10): AdamW (beta1 0.9, epsilon 1e-7), learning rate 0.016
at batch 16384, 20 warmup epochs, cosine to 0 over 500 epochs, weight decay 0.1, dropout 0.2,
stochastic depth 0.075, RandAugment 2 ops at magnitude 15 with probability 0.7, trained at
256 px. Not run here (no ImageNet):
  python -m experiments.train --config=configs/v4_hybrid_medium.py --workdir=DIR --config.data_dir=...

timm's weights: `--config.init_from=timm:PATH`. Variants: `small_image`, `fashion_mnist` (not run
here in full).
"""

from configs import common

MQA_DOWN = ('mqa', 3, (4, 64, 2), 160, False, None, 1, 1)  # keys and values at stride 2
MQA = ('mqa', 3, (4, 64, 1), 256, False, None, 1, 1)


def get_config(arg: str | None = None):
  config = common.get_base_config()
  common.v4_model(config, layer_scale_init=1e-5)
  config.model.blocks = (
      # block   kernel  expansion out  se     activation stride repeats
      ('conv',  3,      None,     32,  False, 'relu',    2,     1),  # stem
      ('fused', 3,      4,        48,  False, 'relu',    2,     1),  # FusedIB
      ('uib',   (3, 5), 4,        80,  False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (3, 3), 2,        80,  False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 5), 6,        160, False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (0, 0), 2,        160, False, 'relu',    1,     1),  # FFN
      ('uib',   (3, 3), 4,        160, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 5), 4,        160, False, 'relu',    1,     1),  # ExtraDW
      MQA_DOWN,
      ('uib',   (3, 3), 4,        160, False, 'relu',    1,     1),  # ExtraDW
      MQA_DOWN,
      ('uib',   (3, 0), 4,        160, False, 'relu',    1,     1),  # ConvNeXt-like
      MQA_DOWN,
      ('uib',   (3, 3), 4,        160, False, 'relu',    1,     1),  # ExtraDW
      MQA_DOWN,
      ('uib',   (3, 0), 4,        160, False, 'relu',    1,     1),  # ConvNeXt-like
      ('uib',   (5, 5), 6,        256, False, 'relu',    2,     1),  # ExtraDW
      ('uib',   (5, 5), 4,        256, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (3, 5), 4,        256, False, 'relu',    1,     2),  # ExtraDW
      ('uib',   (0, 0), 2,        256, False, 'relu',    1,     1),  # FFN
      ('uib',   (3, 5), 2,        256, False, 'relu',    1,     1),  # ExtraDW
      ('uib',   (0, 0), 2,        256, False, 'relu',    1,     1),  # FFN
      ('uib',   (0, 0), 4,        256, False, 'relu',    1,     1),  # FFN
      MQA,
      ('uib',   (3, 0), 4,        256, False, 'relu',    1,     1),  # ConvNeXt-like
      MQA,
      ('uib',   (5, 5), 4,        256, False, 'relu',    1,     1),  # ExtraDW
      MQA,
      ('uib',   (5, 0), 4,        256, False, 'relu',    1,     1),  # ConvNeXt-like
      MQA,
      ('uib',   (5, 0), 4,        256, False, 'relu',    1,     1),  # ConvNeXt-like
      ('conv',  1,      None,     960, False, 'relu',    1,     1),
  )
  config.input.image_size = 256
  common.v4_paper_recipe(config, batch_size=16384, learning_rate=0.016, num_epochs=500,
                         warmup_epochs=20, weight_decay=0.1, adam_b1=0.9, epsilon=1e-7,
                         dropout_rate=0.2, drop_path_rate=0.075, randaugment=(0.7, 2, 15.0))
  return common.apply_variants(config, 'v4_hybrid_medium', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long'))
