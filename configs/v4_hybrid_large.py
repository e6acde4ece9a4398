r"""MobileNetV4-Hybrid-L on ImageNet: Qin et al. 2024 (arXiv 2404.10518), Table 15, as built by
timm (`mobilenetv4_hybrid_large`) and TF Model Garden: 37,764,624 params, 7711.9M MAdds at 384 px,
339.7M of them in the attention matmuls (paper: 83.4% top-1; timm's weights 84.00%).

GELU (the exact, erf form) everywhere; every UIB and the FusedIB expand 4x. Mobile MQA rows: 8
query heads, one key and value head of width 48 down-sampled at stride 2 in the 24x24 stage, of
width 64 at stride 1 in the 12x12 stage. Layer scale (init 1e-5) on every UIB and MQA branch.
Recipe (Tab. 10): AdamW (beta1 0.9, epsilon 1e-7), learning rate 0.01 at batch 16384, 20 warmup
epochs, cosine to 0.001 of the peak over 500 epochs, weight decay 0.2, dropout 0.2, stochastic
depth 0.35, RandAugment 2 ops at magnitude 15 (probability 1), Mixup 0.8 / CutMix 1.0 on 30%
of the batches, trained at 384 px. Not run here (no ImageNet):
  python -m experiments.train --config=configs/v4_hybrid_large.py --workdir=DIR --config.data_dir=...

timm's weights: `--config.init_from=timm:PATH`. Variants: `small_image`, `fashion_mnist` (not run
here in full).
"""

from configs import common

MQA_DOWN = ('mqa', 3, (8, 48, 2), 192, False, None, 1, 1)  # keys and values at stride 2
MQA = ('mqa', 3, (8, 64, 1), 512, False, None, 1, 1)


def get_config(arg: str | None = None):
  config = common.get_base_config()
  common.v4_model(config, activation='gelu', layer_scale_init=1e-5)
  config.model.blocks = (
      # block   kernel  expansion out  se     activation stride repeats
      ('conv',  3,      None,     24,  False, 'gelu',    2,     1),  # stem
      ('fused', 3,      4,        48,  False, 'gelu',    2,     1),  # FusedIB
      ('uib',   (3, 5), 4,        96,  False, 'gelu',    2,     1),  # ExtraDW
      ('uib',   (3, 3), 4,        96,  False, 'gelu',    1,     1),  # ExtraDW
      ('uib',   (3, 5), 4,        192, False, 'gelu',    2,     1),  # ExtraDW
      ('uib',   (3, 3), 4,        192, False, 'gelu',    1,     3),  # ExtraDW
      ('uib',   (3, 5), 4,        192, False, 'gelu',    1,     1),  # ExtraDW
      ('uib',   (5, 3), 4,        192, False, 'gelu',    1,     2),  # ExtraDW
      MQA_DOWN,
      ('uib',   (5, 3), 4,        192, False, 'gelu',    1,     1),  # ExtraDW
      MQA_DOWN,
      ('uib',   (5, 3), 4,        192, False, 'gelu',    1,     1),  # ExtraDW
      MQA_DOWN,
      ('uib',   (5, 3), 4,        192, False, 'gelu',    1,     1),  # ExtraDW
      MQA_DOWN,
      ('uib',   (3, 0), 4,        192, False, 'gelu',    1,     1),  # ConvNeXt-like
      ('uib',   (5, 5), 4,        512, False, 'gelu',    2,     4),  # ExtraDW
      ('uib',   (5, 0), 4,        512, False, 'gelu',    1,     1),  # ConvNeXt-like
      ('uib',   (5, 3), 4,        512, False, 'gelu',    1,     1),  # ExtraDW
      ('uib',   (5, 0), 4,        512, False, 'gelu',    1,     2),  # ConvNeXt-like
      ('uib',   (5, 3), 4,        512, False, 'gelu',    1,     1),  # ExtraDW
      ('uib',   (5, 5), 4,        512, False, 'gelu',    1,     1),  # ExtraDW
      MQA,
      ('uib',   (5, 0), 4,        512, False, 'gelu',    1,     1),  # ConvNeXt-like
      MQA,
      ('uib',   (5, 0), 4,        512, False, 'gelu',    1,     1),  # ConvNeXt-like
      MQA,
      ('uib',   (5, 0), 4,        512, False, 'gelu',    1,     1),  # ConvNeXt-like
      MQA,
      ('uib',   (5, 0), 4,        512, False, 'gelu',    1,     1),  # ConvNeXt-like
      ('conv',  1,      None,     960, False, 'gelu',    1,     1),
  )
  config.input.image_size = 384
  common.v4_paper_recipe(config, batch_size=16384, learning_rate=0.01, num_epochs=500,
                         warmup_epochs=20, weight_decay=0.2, adam_b1=0.9, epsilon=1e-7,
                         dropout_rate=0.2, drop_path_rate=0.35, randaugment=(1.0, 2, 15.0),
                         mix_prob=0.3, cosine_end=0.001)
  return common.apply_variants(config, 'v4_hybrid_large', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long'))
