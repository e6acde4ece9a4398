"""'auto' picks a known implementation for the backend."""

from mobilenet_jax.ops import conv, depthwise


def test_auto_implementation_is_a_known_one():
  assert depthwise.resolve_implementation('auto') in depthwise.IMPLEMENTATIONS
  assert depthwise.resolve_implementation('grouped') == 'grouped'
  assert conv.resolve_implementation('auto') in conv.IMPLEMENTATIONS
