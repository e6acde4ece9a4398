"""MobileNetV3-Small (Howard et al. 2019, arXiv 1905.02244, Table 2), as released (torchvision).

The released model differs from the paper's table: a 1024-wide head and no SE on the last conv.
  python -m experiments.summary --config=configs/v3_small.py
Variants: `minimalistic` (3x3, ReLU, no SE), `small_image` (28-32 px inputs).
"""

from configs import common


def get_config(arg: str | None = None):
  config = common.get_base_config()
  config.model.blocks = (
      # block  kernel expansion out   se     activation    stride repeats
      ('conv', 3,     None,     16,   False, 'hard_swish', 2,     1),
      ('ir',   3,     16,       16,   True,  'relu',       2,     1),
      ('ir',   3,     72,       24,   False, 'relu',       2,     1),
      ('ir',   3,     88,       24,   False, 'relu',       1,     1),
      ('ir',   5,     96,       40,   True,  'hard_swish', 2,     1),
      ('ir',   5,     240,      40,   True,  'hard_swish', 1,     2),
      ('ir',   5,     120,      48,   True,  'hard_swish', 1,     1),
      ('ir',   5,     144,      48,   True,  'hard_swish', 1,     1),
      ('ir',   5,     288,      96,   True,  'hard_swish', 2,     1),
      ('ir',   5,     576,      96,   True,  'hard_swish', 1,     2),
      ('conv', 1,     None,     576,  False, 'hard_swish', 1,     1),
  )
  config.model.head_width = 1024
  config.model.head_activation = 'hard_swish'
  _paper_recipe(config)
  return common.apply_variants(config, 'v3_small', arg,
                               ('minimalistic', 'small_image', 'fashion_mnist'))


def _paper_recipe(config):
  """ImageNet recipe of the V3 paper (Section 6.1): RMSProp with momentum 0.9, learning rate 0.1
  at batch 4096 decayed x0.01 every 3 epochs (as printed; torchvision's reproduction uses x0.973
  every 2 epochs from 0.064 at batch 1024), L2 1e-5, dropout 0.2, weight EMA 0.9999, BN
  momentum 0.99."""
  config.batch_size = 4096
  config.learning_rate = 0.1
  config.lr_base_batch_size = 4096
  config.schedule = 'exponential'
  config.warmup_epochs = 0.0
  config.decay_epochs = 3.0
  config.decay_rate = 0.01
  config.weight_decay = 2e-5  # TF's L2 of 1e-5 on the loss
  config.label_smoothing = 0.0
  config.ema_decay = 0.9999
