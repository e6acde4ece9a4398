"""MobileNetV1 (Howard et al. 2017, arXiv 1704.04861, Table 1), Keras `MobileNet` layout.

  python -m experiments.summary --config=configs/v1.py --config.model.width_multiplier=0.5
Variants: `small_image` (28-32 px inputs).
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
  return common.apply_variants(config, 'v1', arg, ('small_image', 'fashion_mnist'))
