r"""MobileNetV5-300M: the vision encoder of Gemma 3n, as timm 1.0.31 builds it
(`mobilenetv5_300m`, whose `.gemma3n` weights are the encoder's; no paper describes V5, whose
blocks are the V4 paper's, Qin et al. 2024, arXiv 2404.10518): 294,126,912 params (the encoder,
as timm's default: no classifier), 435,741.5M MAdds at 768 px, 47,903.1M of them in the
attention matmuls; both equal timm's (its parameters; PyTorch's FlopCounterMode on its model,
flops / 2). See docs/mobilenet_v5.md.

Four stages after a 64-wide stem (3x3 conv with bias, stride 2): three FusedIBs (timm's
EdgeResidual) at 128, five UIBs at 256, eight UIBs, a 1x FFN and fourteen Mobile MQA + 2x FFN
pairs at 640 (12 query heads, one key and value head of width 64, keys and values down-sampled
by a stride-2 3x3 depthwise conv + RMSNorm: the "MQA v2"), a UIB and nineteen MQA + FFN pairs at
1280 (16 heads of 96). RMSNorm (epsilon 1e-6) in place of batch norm everywhere, GELU in its tanh
form, layer scale 1e-5 on every UIB and MQA branch. The head is the multi-scale fusion adapter
(MSFA): the ends of the 1/16 and 1/32 stages, the second upsampled to the first, concatenated
(1920 channels), a 2x FFN to 2048 without shortcut, pooled to 16x16 (3x3 windows at 768 px),
RMSNorm: the 256 tokens Gemma 3n's language model reads.

`model.num_classes` is 0, as timm's default: the network returns the (N, 16, 16, 2048) token map.
To classify, `--config.model.num_classes=1000` (a 2048 -> 1000 classifier on the pooled tokens,
296,175,912 params); the V4 paper's Hybrid-L recipe is set as a starting point. Not run here:
  python -m experiments.train --config=configs/v5_300m.py --workdir=DIR --config.data_dir=... \
    --config.model.num_classes=1000

Gemma 3n's encoder weights (timm's `mobilenetv5_300m.gemma3n`, inputs in [0, 1]):
`--config.init_from=timm:PATH`. Variants: `small_image`, `fashion_mnist` (not run here).
"""

from configs import common

G = 'gelu_tanh'
MQA_640 = ('mqa', 3, (12, 64, 2), 640, False, None, 1, 1)  # keys and values at stride 2
MQA_1280 = ('mqa', 3, (16, 96, 1), 1280, False, None, 1, 1)
FFN_640 = ('uib', (0, 0), 2, 640, False, G, 1, 1)
FFN_1280 = ('uib', (0, 0), 2, 1280, False, G, 1, 1)


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
      ('uib',   (5, 5), 6,        640,  False, G,         2,     1),  # ExtraDW
      ('uib',   (5, 0), 4,        640,  False, G,         1,     7),  # ConvNeXt-like
      ('uib',   (0, 0), 1,        640,  False, G,         1,     1),  # FFN
      *(MQA_640, FFN_640) * 14,
      ('uib',   (5, 5), 6,        1280, False, G,         2,     1),  # ExtraDW
      *(MQA_1280, FFN_1280) * 19,
  )
  config.model.num_classes = 0
  config.input.image_size = 768
  common.v4_paper_recipe(config, batch_size=16384, learning_rate=0.01, num_epochs=500,
                         warmup_epochs=20, weight_decay=0.2, adam_b1=0.9, epsilon=1e-7,
                         dropout_rate=0.0, drop_path_rate=0.35, randaugment=(1.0, 2, 15.0),
                         mix_prob=0.3, cosine_end=0.001)
  return common.apply_variants(config, 'v5_300m', arg,
                               ('small_image', 'fashion_mnist', 'fashion_mnist_long'))
