"""Mixup and CutMix of a global batch on the device, inside the jit-compiled train step.

Pure functions of (key, batch): the key comes from (seed, step), so a resumed run mixes exactly
as an uninterrupted one, and the batch is the global one, so the pairs are the same on any number
of devices or hosts. timm pairs example i with B-1-i, the batch reversed; on a sharded batch that
moves the whole batch between devices every step. Here the batch is reversed within each group of
`group_size` consecutive examples (0: the whole batch, timm's): a group that divides every
device's shard keeps the pairs on their device, and which pairs they are is still a function of
the config alone. Written here because the
libraries at hand mix nothing inside a jit step (dm-pix and optax have no mixing; Keras 3's
MixUp/CutMix layers draw from a stateful generator per call). A few lines of `jax.random`.
"""

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Mixing:
  """The config's `input.mixup_alpha`, `cutmix_alpha`, `mix_prob` and `mix_switch_prob`."""
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  prob: float = 1.0           # of mixing a batch at all
  switch_prob: float = 0.5    # of CutMix rather than Mixup, when both alphas are > 0
  group_size: int = 0         # examples are paired within groups of this many; 0: the batch

  @property
  def enabled(self) -> bool:
    return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

  @classmethod
  def from_config(cls, input_config) -> 'Mixing':
    return cls(input_config.mixup_alpha, input_config.cutmix_alpha, input_config.mix_prob,
               input_config.mix_switch_prob, input_config.mix_group_size)

  def partners(self, x: jax.Array) -> jax.Array:
    """Each example's partner: `x` reversed within each group of `group_size` examples."""
    group = self.group_size or x.shape[0]
    return x.reshape(-1, group, *x.shape[1:])[:, ::-1].reshape(x.shape)


def _cutmix_box(key: jax.Array, lam: jax.Array, height: int, width: int
                ) -> tuple[jax.Array, jax.Array]:
  """A box of about (1 - lam) of the image, centred uniformly and clipped to it (CutMix paper);
  returns its mask (HxW) and the share of the image outside it, the labels' weight."""
  cut = jnp.sqrt(1.0 - lam)
  center = jax.random.uniform(key, (2,)) * jnp.array([height, width])
  half = jnp.array([height, width]) * cut / 2
  low = jnp.clip(jnp.round(center - half), 0, jnp.array([height, width]))
  high = jnp.clip(jnp.round(center + half), 0, jnp.array([height, width]))
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  mask = (rows >= low[0]) & (rows < high[0]) & (cols >= low[1]) & (cols < high[1])
  return mask, 1.0 - jnp.prod(high - low) / (height * width)


def mix(key: jax.Array, images: jax.Array, targets: jax.Array, mixing: Mixing
        ) -> tuple[jax.Array, jax.Array]:
  """Images (NHWC) and target distributions (N x classes, label smoothing already applied)
  mixed with their partners (`Mixing.partners`): with probability `prob`, CutMix (probability
  `switch_prob` when both are on) or Mixup, lam ~ Beta(alpha, alpha); the targets are mixed with the weight of
  what each image shows."""
  apply_key, switch_key, mixup_key, cutmix_key, box_key = jax.random.split(key, 5)
  partners = mixing.partners(images)
  candidates = []  # (images, weight of the image's own target)
  if mixing.mixup_alpha > 0:
    lam = jax.random.beta(mixup_key, mixing.mixup_alpha, mixing.mixup_alpha)
    candidates.append((lam * images + (1.0 - lam) * partners, lam))
  if mixing.cutmix_alpha > 0:
    lam = jax.random.beta(cutmix_key, mixing.cutmix_alpha, mixing.cutmix_alpha)
    mask, own = _cutmix_box(box_key, lam, images.shape[1], images.shape[2])
    candidates.append((jnp.where(mask[None, :, :, None], partners, images), own))
  mixed, own = candidates[0]
  if len(candidates) == 2:
    use_cutmix = jax.random.uniform(switch_key) < mixing.switch_prob
    mixed = jnp.where(use_cutmix, candidates[1][0], mixed)
    own = jnp.where(use_cutmix, candidates[1][1], own)
  applied = jax.random.uniform(apply_key) < mixing.prob
  images = jnp.where(applied, mixed, images).astype(images.dtype)
  own = jnp.where(applied, own, 1.0)
  return images, own * targets + (1.0 - own) * mixing.partners(targets)
