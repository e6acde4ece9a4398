"""Knowledge distillation inside the train step: the teachers' averaged logits on the student's
own batch, and the loss that matches them.

The teachers (read by `teachers.py`) run in eval mode inside the jit-compiled step on the
student's batch as augmented and mixed (big_vision's "function matching": teacher and student
see the same image), resized to each teacher's input size and normalized as it was trained;
their logits are averaged (an ensemble). The loss (Hinton et al. 2015):
  (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)),
the T^2 keeping the soft term's gradients at the scale of the hard term's as T grows. The
teachers' variables are an argument of the step, not a field of the train state: they are never
in the student's checkpoint.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class Distillation:
  """What the train step needs of the teachers besides their variables (its third argument):
  their networks and inputs, and the loss's weights."""
  models: tuple[nn.Module, ...]
  image_sizes: tuple[int, ...]
  # Per teacher, the affine map from the student's normalized pixels to the teacher's:
  # x_teacher = x_student * scale + shift (both normalize (x - mean) / std, pixels in [0, 255]).
  scales: tuple[tuple[float, ...], ...]
  shifts: tuple[tuple[float, ...], ...]
  alpha: float
  temperature: float

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, teachers: tuple) -> 'Distillation':
    """From the student's config and its teachers (`teachers.Teacher`)."""
    mean, std = np.asarray(config.input.mean, float), np.asarray(config.input.std, float)
    scales, shifts = [], []
    for teacher in teachers:
      t_mean = np.asarray(teacher.config.input.mean, float)
      t_std = np.asarray(teacher.config.input.std, float)
      scales.append(tuple((std / t_std).tolist()))
      shifts.append(tuple(((mean - t_mean) / t_std).tolist()))
    return cls(tuple(t.model for t in teachers),
               tuple(t.config.input.image_size for t in teachers), tuple(scales),
               tuple(shifts), float(config.distill.alpha), float(config.distill.temperature))

  def teacher_logits(self, variables: tuple, images: jax.Array) -> jax.Array:
    """The teachers' logits on the student's `images`, averaged (float32, no gradient)."""
    logits = []
    for model, size, scale, shift, v in zip(self.models, self.image_sizes, self.scales,
                                           self.shifts, variables):
      x = images * jnp.asarray(scale, images.dtype) + jnp.asarray(shift, images.dtype)
      if x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'bilinear')
      logits.append(model.apply(v, x, train=False).astype(jnp.float32))
    return jax.lax.stop_gradient(sum(logits) / len(logits))

  def loss(self, cross_entropy: jax.Array, logits: jax.Array,
           teacher_logits: jax.Array) -> jax.Array:
    """The batch's loss from its mean cross-entropy with the labels (`cross_entropy`) and the
    student's and teachers' logits."""
    t = self.temperature
    soft = optax.kl_divergence(jax.nn.log_softmax(logits.astype(jnp.float32) / t),
                               jax.nn.softmax(teacher_logits / t)).mean()
    return (1.0 - self.alpha) * cross_entropy + self.alpha * t * t * soft
