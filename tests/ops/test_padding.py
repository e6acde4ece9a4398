"""TensorFlow's 'same' padding."""

import pytest

from mobilenet_jax.ops.padding import spatial_padding


@pytest.mark.parametrize('size, stride, kernel, expected', [
    (8, 2, 3, (0, 1)), (7, 2, 3, (1, 1)), (8, 1, 5, (2, 2)), (8, 2, 5, (1, 2))])
def test_same_padding_matches_tensorflow(size, stride, kernel, expected):
  assert spatial_padding(size, kernel, stride, 'same') == expected
  # The output has ceil(size / stride) pixels, as TensorFlow's 'SAME' gives.
  lo, hi = expected
  assert (size + lo + hi - kernel) // stride + 1 == -(-size // stride)
