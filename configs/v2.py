"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381, Table 2), torchvision `mobilenet_v2` layout.

Expansion is V2's ratio t of the block's input width.
  python -m experiments.summary --config=configs/v2.py --config.model.width_multiplier=1.4
Variants: `small_image` (28-32 px inputs).
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
  _paper_recipe(config)
  return common.apply_variants(config, 'v2', arg, ('small_image', 'fashion_mnist'))


def _paper_recipe(config):
  """ImageNet recipe of the V2 paper (Section 6.1): RMSProp (decay 0.9, momentum 0.9), weight
  decay 4e-5, learning rate 0.045 at batch 96 decayed x0.98 every epoch; the released checkpoints
  add label smoothing 0.1 and a weight EMA of 0.9999."""
  config.batch_size = 96
  config.learning_rate = 0.045
  config.lr_base_batch_size = 96
  config.schedule = 'exponential'
  config.warmup_epochs = 0.0
  config.decay_epochs = 1.0
  config.decay_rate = 0.98
  config.weight_decay = 8e-5  # TF's L2 of 4e-5 on the loss
