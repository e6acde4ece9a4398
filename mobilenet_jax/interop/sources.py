"""Where published weights come from, and what each source's weights imply about the model.

One entry per source: the families it publishes (by its own builder names), and the model and
input fields its weights were trained with, which `pretrained.configure` sets before the model is
built. This table is the only place that knows a source by name.
"""

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Source:
  builders: dict[str, str]                 # our family -> the source's model name
  model_fields: dict[str, dict[str, Any]]  # our family -> model fields of its weights
  input_fields: dict[str, dict[str, Any]]  # our family -> input fields of its weights


# Keras applications: TensorFlow's 'same' padding and epsilon, inputs scaled to [-1, 1] (Keras's
# `preprocess_input`; the V3 models are built without their own rescaling layer), evaluated as
# they always were here: the whole image resized (bicubic), then cropped.
_KERAS_BUILDERS = {'v1': 'MobileNet', 'v2': 'MobileNetV2', 'v3_large': 'MobileNetV3Large',
                   'v3_small': 'MobileNetV3Small'}

# timm: every family, PyTorch's padding and epsilon, ImageNet mean/std inputs, and the bicubic
# evaluation of its weights' pretrained configs (crop fraction 0.95 for V4, 0.875 before). V5:
# RMSNorm's epsilon 1e-6, no crop, inputs in [-1, 1] (base) or [0, 1] (Gemma 3n's 300M).
_TIMM_BUILDERS = {'v1': 'mobilenetv1_100', 'v2': 'mobilenetv2_100',
                  'v3_large': 'mobilenetv3_large_100', 'v3_small': 'mobilenetv3_small_100',
                  'v4_conv_small': 'mobilenetv4_conv_small',
                  'v4_conv_medium': 'mobilenetv4_conv_medium',
                  'v4_conv_large': 'mobilenetv4_conv_large',
                  'v4_hybrid_medium': 'mobilenetv4_hybrid_medium',
                  'v4_hybrid_large': 'mobilenetv4_hybrid_large',
                  'v5_base': 'mobilenetv5_base', 'v5_300m': 'mobilenetv5_300m'}
_TIMM_V5_INPUTS = {'v5_base': {'mean': (127.5,) * 3, 'std': (127.5,) * 3},
                   'v5_300m': {'mean': (0.0,) * 3, 'std': (255.0,) * 3}}

SOURCES = {
    # torchvision: padding k // 2 on every side, PyTorch's epsilon for V2, ImageNet mean/std
    # inputs (the configs' default), and its reference evaluation: the whole image resized
    # (bilinear, antialiased), then cropped.
    'torchvision': Source(
        builders={'v2': 'mobilenet_v2', 'v3_large': 'mobilenet_v3_large',
                  'v3_small': 'mobilenet_v3_small'},
        model_fields={'v2': {'padding': 'symmetric', 'bn_epsilon': 1e-5},
                      'v3_large': {'padding': 'symmetric', 'bn_epsilon': 1e-3},
                      'v3_small': {'padding': 'symmetric', 'bn_epsilon': 1e-3}},
        input_fields={family: {'interpolation': 'bilinear', 'eval_decode': 'full'}
                      for family in ('v2', 'v3_large', 'v3_small')}),
    'keras': Source(
        builders=_KERAS_BUILDERS,
        # Keras's V3 keeps its 16-channel stem at every width (V1's and V2's scale).
        model_fields={family: {'padding': 'same', 'bn_epsilon': 1e-3,
                               **({'scale_stem': False} if family.startswith('v3') else {})}
                      for family in _KERAS_BUILDERS},
        input_fields={family: {'mean': (127.5, 127.5, 127.5), 'std': (127.5, 127.5, 127.5),
                               'interpolation': 'bicubic', 'eval_decode': 'full'}
                      for family in _KERAS_BUILDERS}),
    'timm': Source(
        builders=_TIMM_BUILDERS,
        model_fields={family: {'padding': 'symmetric',
                               'bn_epsilon': 1e-6 if family in _TIMM_V5_INPUTS else 1e-5}
                      for family in _TIMM_BUILDERS},
        input_fields={family: {'mean': (0.485 * 255, 0.456 * 255, 0.406 * 255),
                               'std': (0.229 * 255, 0.224 * 255, 0.225 * 255),
                               'interpolation': 'bicubic', 'eval_decode': 'full',
                               'crop_fraction': 0.95 if family.startswith('v4') else 0.875}
                      | ({'crop_fraction': 1.0, **_TIMM_V5_INPUTS[family]}
                         if family in _TIMM_V5_INPUTS else {})
                      for family in _TIMM_BUILDERS}),
}
