"""Backbones: our feature maps equal timm's `features_only` maps, given the same weights.

timm's models are built with random weights, moved away from their initial values as in
tests/interop/test_timm_import.py, and saved whole; our backbone imports the file and drops the
head, while timm's backbone loads the same tensors. Both compute in float64 (see there why).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import mobilenet_jax as mnj
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.interop import torch_reference
from mobilenet_jax.interop.sources import SOURCES
from tests.interop.test_timm_import import SIZE, _timm_model


def _timm_backbone(family: str, whole: torch.nn.Module) -> torch.nn.Module:
  import timm  # pylint: disable=g-import-not-at-top
  backbone = timm.create_model(SOURCES['timm'].builders[family], pretrained=False,
                               features_only=True)
  missing, _ = backbone.load_state_dict(whole.state_dict(), strict=False)
  assert not missing
  return backbone.eval().double()


def _maps(module, variables, images):
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    return jax.jit(functools.partial(module.clone(dtype=jnp.float64).apply, train=False))(
        variables, images.transpose(0, 2, 3, 1))


def _agree(got, want):
  assert len(got) == len(want)
  for ours, theirs in zip(got, want):
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    assert np.abs(theirs).max() > 0.1  # not a comparison of near-zero maps
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


# V4 Conv-S in the default run (its whole file and its body alone); V2 (whose 1280 conv is the
# head, not a feature), V3-Large and Hybrid-M (attention) are slow.
@pytest.mark.parametrize('family', [
    'v4_conv_small', pytest.param('v2', marks=pytest.mark.slow),
    pytest.param('v3_large', marks=pytest.mark.slow),
    pytest.param('v4_hybrid_medium', marks=pytest.mark.slow)])
def test_feature_maps_equal_timms(family, tmp_path):
  whole = _timm_model(family)
  backbone = _timm_backbone(family, whole)
  images = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE))
  with torch.no_grad():
    want = backbone(torch.from_numpy(images))
  assert [f['channels'] for f in mnj.feature_info(family)] == backbone.feature_info.channels()
  assert [f['stride'] for f in mnj.feature_info(family)] == backbone.feature_info.reduction()
  torch.save(whole.state_dict(), tmp_path / 'whole.pth')
  module, variables = mnj.create_model(family, f'timm:{tmp_path / "whole.pth"}',
                                       features_only=True, **{'input.image_size': SIZE})
  assert 'classifier' not in variables['params']
  _agree(_maps(module, variables, images), want)
  if family == 'v4_conv_small':  # a file of the body alone, as timm's backbone saves it
    torch.save(backbone.state_dict(), tmp_path / 'body.pth')
    _, body = mnj.create_model(family, f'timm:{tmp_path / "body.pth"}', features_only=True,
                               **{'input.image_size': SIZE})
    _agree(_maps(module, body, images), want)


def test_out_indices_pick_maps_and_are_checked(tmp_path):
  torch.save(_timm_model('v4_conv_small').state_dict(), tmp_path / 'w.pth')
  module, variables = mnj.create_model('v4_conv_small', f'timm:{tmp_path / "w.pth"}',
                                       features_only=True, out_indices=(1, 4),
                                       **{'input.image_size': SIZE})
  shapes = [m.shape for m in jax.eval_shape(module.apply, variables,
                                            jnp.zeros((1, SIZE, SIZE, 3)))]
  assert shapes == [(1, SIZE // 4, SIZE // 4, 32), (1, SIZE // 32, SIZE // 32, 960)]
  with pytest.raises(ConfigError, match=r'out_indices=\(5,\) is not allowed; .* 0-4'):
    mnj.create_model('v4_conv_small', features_only=True, out_indices=(5,))
  torch.save(_timm_model('v2').state_dict(), tmp_path / 'v2.pth')
  with pytest.raises(ConfigError, match='not the same architecture|does not fit'):
    mnj.create_model('v4_conv_small', f'timm:{tmp_path / "v2.pth"}', features_only=True,
                     **{'input.image_size': SIZE})
