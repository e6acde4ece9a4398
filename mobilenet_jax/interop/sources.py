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
  input_fields: dict[str, Any]             # input fields of every family's weights


# Keras applications: TensorFlow's 'same' padding and epsilon, inputs scaled to [-1, 1] (Keras's
# `preprocess_input`; the V3 models are built without their own rescaling layer).
_KERAS_BUILDERS = {'v1': 'MobileNet', 'v2': 'MobileNetV2', 'v3_large': 'MobileNetV3Large',
                   'v3_small': 'MobileNetV3Small'}

SOURCES = {
    # torchvision: padding k // 2 on every side, PyTorch's epsilon for V2, and ImageNet
    # mean/std inputs (the configs' default).
    'torchvision': Source(
        builders={'v2': 'mobilenet_v2', 'v3_large': 'mobilenet_v3_large',
                  'v3_small': 'mobilenet_v3_small'},
        model_fields={'v2': {'padding': 'symmetric', 'bn_epsilon': 1e-5},
                      'v3_large': {'padding': 'symmetric', 'bn_epsilon': 1e-3},
                      'v3_small': {'padding': 'symmetric', 'bn_epsilon': 1e-3}},
        input_fields={}),
    'keras': Source(
        builders=_KERAS_BUILDERS,
        model_fields={family: {'padding': 'same', 'bn_epsilon': 1e-3} for family in _KERAS_BUILDERS},
        input_fields={'mean': (127.5, 127.5, 127.5), 'std': (127.5, 127.5, 127.5)}),
}
