"""Mixup and CutMix: labels mixed with the weight of what each image shows, summing to 1, and a
pure function of the key."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mobilenet_jax.train.mixing import Mixing, mix

BATCH, SIZE, CLASSES = 6, 16, 10


def _batch():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
  labels = np.arange(BATCH)  # distinct, so each target's weight can be read back
  return jnp.asarray(images), jax.nn.one_hot(labels, CLASSES), labels


def _mixed(seed, mixing):
  images, targets, labels = _batch()
  out_images, out_targets = jax.jit(mix, static_argnums=3)(jax.random.key(seed), images, targets,
                                                           mixing)
  own = np.asarray(out_targets)[np.arange(BATCH), labels]
  return np.asarray(images), np.asarray(out_images), np.asarray(out_targets), own


def test_mixup_blends_images_and_labels_by_the_same_weight():
  images, out, targets, own = _mixed(0, Mixing(mixup_alpha=0.8))
  np.testing.assert_allclose(targets.sum(-1), 1, atol=1e-6)
  assert np.all(own == own[0]) and 0 < own[0] < 1
  np.testing.assert_allclose(out, own[0] * images + (1 - own[0]) * images[::-1], atol=1e-5)


def test_cutmix_pastes_a_box_and_weighs_labels_by_its_area():
  images, out, targets, own = _mixed(0, Mixing(cutmix_alpha=1.0))
  np.testing.assert_allclose(targets.sum(-1), 1, atol=1e-6)
  from_self = np.all(out == images, axis=-1)
  from_partner = np.all(out == images[::-1], axis=-1)
  assert np.all(from_self | from_partner)  # every pixel is one image's or the other's
  np.testing.assert_allclose(from_self.mean(axis=(1, 2)), own, atol=1e-6)
  rows, cols = np.nonzero(from_partner[0])
  assert from_partner[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a box


def test_mixing_is_a_function_of_the_key_and_switches_between_the_two():
  mixing = Mixing(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)
  np.testing.assert_array_equal(_mixed(3, mixing)[1], _mixed(3, mixing)[1])
  kinds = set()
  for seed in range(12):
    images, out, targets, own = _mixed(seed, mixing)
    np.testing.assert_allclose(targets.sum(-1), 1, atol=1e-6)
    is_cutmix = np.all(np.all(out == images, -1) | np.all(out == images[::-1], -1))
    kinds.add('cutmix' if is_cutmix else 'mixup')
  assert kinds == {'cutmix', 'mixup'}


def test_a_batch_not_drawn_for_mixing_is_left_as_it_is():
  images, targets, _ = _batch()
  out_images, out_targets = mix(jax.random.key(0), images, targets,
                                Mixing(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.0))
  np.testing.assert_array_equal(out_images, images)
  np.testing.assert_array_equal(out_targets, targets)
  # The train step skips mixing altogether unless an alpha and the probability are above 0.
  assert Mixing(cutmix_alpha=1.0).enabled
  assert not Mixing().enabled and not Mixing(mixup_alpha=0.8, prob=0.0).enabled


def test_mix_probability_mixes_about_that_share_of_batches():
  mixing = Mixing(mixup_alpha=0.8, prob=0.3)
  mixed = sum(not np.array_equal(_mixed(seed, mixing)[1], _batch()[0]) for seed in range(60))
  assert 8 <= mixed <= 30


def test_grouped_pairs_stay_in_their_group_and_mix_alike_on_1_and_8_devices():
  """input.mix_group_size: example i of a group pairs with the group's last-but-i; on 8
  devices, 8 examples each, the compiled mixing moves no example between devices, and mixes
  exactly as on one device."""
  mixing = Mixing(mixup_alpha=0.8, cutmix_alpha=1.0, group_size=8)
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.normal(size=(64, 4, 4, 3)).astype(np.float32))
  targets = jax.nn.one_hot(np.arange(64) % CLASSES, CLASSES)
  np.testing.assert_array_equal(mixing.partners(jnp.arange(16)),
                                [7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8])
  outputs, texts = [], {}
  for devices, group_size in ((1, 8), (8, 8), (8, 0)):
    mesh = Mesh(np.asarray(jax.devices()[:devices]), ('data',))
    sharded = NamedSharding(mesh, P('data'))
    mixer = dataclasses.replace(mixing, group_size=group_size)
    step = jax.jit(lambda k, x, t, mixer=mixer: mix(k, x, t, mixer),
                   in_shardings=(NamedSharding(mesh, P()), sharded, sharded))
    args = (jax.random.key(5), jax.device_put(images, sharded), jax.device_put(targets, sharded))
    texts[devices, group_size] = step.lower(*args).compile().as_text()
    if group_size:
      outputs.append(jax.device_get(step(*args)))
  for got, want in zip(outputs[1], outputs[0]):
    np.testing.assert_array_equal(got, want)
  moves = ('all-to-all', 'collective-permute', 'all-gather')
  assert not any(op in texts[8, 8] for op in moves)
  assert any(op in texts[8, 0] for op in moves)  # the whole batch reversed: examples move
