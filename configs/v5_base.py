r"""MobileNetV5-Base: the smaller sibling of Gemma 3n's vision encoder, as timm 1.0.31 builds it
(`mobilenetv5_base`, a classification config without published weights; no paper describes V5,
whose blocks are the V4 paper's, Qin et al. 2024, arXiv 2404.10518): 82,647,976 params,
20,051.8M MAdds at 256 px, 461.4M of them in the attention matmuls; both equal timm's (its
parameters; PyTorch's FlopCounterMode on its model, flops / 2). See docs/mobilenet_v5.md.

Four stages after a 64-wide stem (3x3 conv with bias, stride 2): three FusedIBs (timm's
EdgeResidual) at 128, five UIBs at 256, three UIBs, a 1x FFN and six Mobile MQA + 2x FFN pairs
at 512 (8 query heads, one key and value head of width 64, keys and values at full resolution),
a UIB and seven MQA + FFN pairs at 1024 (16 heads of 64). RMSNorm (epsilon 1e-6) in place of
batch norm everywhere, GELU in its tanh form, layer scale 1e-5 on every UIB and MQA branch. The
head is the multi-scale fusion adapter (MSFA): the ends of the 1/16 and 1/32 stages, the second
upsampled to the first, concatenated (1536 channels), a 2x FFN to 2048 without shortcut, pooled
to 16x16, RMSNorm: Gemma 3n's 256 tokens; pooled again for the classifier (no head conv).

timm lists no recipe for it; the V4 paper's Hybrid-L recipe is set as a starting point. Not run
here (no ImageNet):
  python -m experiments.train --config=configs/v5_base.py --workdir=DIR --config.data_dir=...

timm's weights: `--config.init_from=timm:PATH`; the encoder alone (the token map, no
classifier): `--config.model.num_classes=0`. Variants: `small_image`, `fashion_mnist` (not run
here in full).
"""

from configs import common

G = 'gelu_tanh'
MQA = ('mqa', 3, (8, 64, 1), 512, False, None, 1, 1)    # timm's string says s2; its builder
MQA_1024 = ('mqa', 3, (16, 64, 1), 1024, False, None, 1, 1)  # strides only a stage's first block
FFN = ('uib', (0, 0), 2, 512, False, G, 1, 1)
FFN_1024 = ('uib', (0, 0), 2, 1024, False, G, 1, 1)


def get_config(arg: str | None = None):
  config = common.get_base_config()
  common.v5_model(config)
  config.model.blocks = (
      # block   kernel  expansion out   se     activation stride repeats
      ('conv',  3,      None,     64,   False, G,         2,     1),  # stem (conv with bias)
      ('fused', 3,      4,        128,  False, G,         2,     1),  # EdgeResidual
      ('fused', 3,      4,        128,  False, G,         1,     2),  # EdgeResidual
      ('uib',   (3, 5), 6,        256,  False, G,         2,     1),  # ExtraDW
      ('uib',   (5, 0), 4,        256,  False, G,         1,     1),  # ConvNeXt-like
      ('uib',   (3, 0), 4,        256,  False, G,         1,     1),  # ConvNeXt-like
      ('uib',   (5, 0), 4,        256,  False, G,         1,     1),  # ConvNeXt-like
      ('uib',   (3, 0), 4,        256,  False, G,         1,     1),  # ConvNeXt-like
      ('uib',   (5, 5), 6,        512,  False, G,         2,     1),  # ExtraDW
      ('uib',   (5, 0), 4,        512,  False, G,         1,     2),  # ConvNeXt-like
      ('uib',   (0, 0), 1,        512,  False, G,         1,     1),  # FFN
      *(MQA, FFN) * 6,
      ('uib',   (5, 5), 6,        1024, False, G,         2,     1),  # ExtraDW
      *(MQA_1024, FFN_1024) * 7,
  )
  config.input.image_size = 256
  common.v4_paper_recipe(config, batch_size=16384, learning_rate=0.01, num_epochs=500,
                         warmup_epochs=20, weight_decay=0.2, adam_b1=0.9, epsilon=1e-7,
                         dropout_rate=0.0, drop_path_rate=0.35, randaugment=(1.0, 2, 15.0),
                         mix_prob=0.3, cosine_end=0.001)
  return common.apply_variants(config, 'v5_base', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long'))
