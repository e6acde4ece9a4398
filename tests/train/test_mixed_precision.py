"""bfloat16 as a mixed-precision policy: `model.dtype=bfloat16` computes the convolutions in
bfloat16, while the parameters, the optimizer state, the batch-norm statistics, the logits, the
softmax and the loss stay float32. One train step of a tiny network with an attention row,
compiled once for the module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax.train import parallel, setup
from tests.train_fixtures import TINY_TABLE, tiny_config

F32, BF16 = jnp.dtype('float32'), jnp.dtype('bfloat16')
# The tiny table and a V4 hybrid's Mobile MQA row: 2 heads of width 8, keys and values at stride 2.
TABLE = TINY_TABLE + (('mqa', 3, (2, 8, 2), 16, False, None, 1, 1),)


@pytest.fixture(scope='module')
def bf16_step():
  """(state before, state after, metrics, jaxpr) of one bfloat16 train step."""
  config = tiny_config(batch_size=8, **{'model.dtype': 'bfloat16', 'model.blocks': TABLE})
  compiled = parallel.compile_steps(setup.build_model(config), config, steps_per_epoch=10,
                                    num_steps=3, devices=jax.devices()[:1])
  rng = np.random.default_rng(0)
  batch = compiled.to_devices({'image': rng.normal(size=(8, 16, 16, 3)).astype(np.float32),
                               'label': rng.integers(0, 10, 8)})
  before = jax.device_get(compiled.init())
  jaxpr = jax.make_jaxpr(compiled.train_step)(compiled.init(), batch)
  after, metrics = compiled.train_step(compiled.init(), batch)
  return before, jax.device_get(after), jax.device_get(metrics), jaxpr


def _equations(jaxpr):
  """Every equation of `jaxpr` and of the jaxprs inside it (jit, custom gradients, ...)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for inner in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(inner, 'jaxpr', inner)
        if hasattr(inner, 'eqns'):
          yield from _equations(inner)


def _dtypes(variables) -> set:
  return {leaf.dtype for leaf in jax.tree.leaves(variables)
          if jnp.issubdtype(leaf.dtype, jnp.floating)}


def test_the_convolutions_compute_in_bfloat16(bf16_step):
  convs = [e for e in _equations(bf16_step[3].jaxpr) if e.primitive.name == 'conv_general_dilated']
  assert convs and all(v.aval.dtype == BF16 for e in convs for v in e.invars)


def test_parameters_and_optimizer_state_stay_float32(bf16_step):
  before, after, _, _ = bf16_step
  for fields in (after.params, after.ema_params, after.opt_state):
    assert _dtypes(fields) == {F32}
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), before.params, after.params)
  assert all(jax.tree.leaves(changed))  # updated in float32: no step lost to bfloat16 rounding


def test_batch_norm_statistics_stay_float32(bf16_step):
  before, after, _, _ = bf16_step
  for stats in (after.batch_stats, after.ema_batch_stats):
    assert _dtypes(stats) == {F32}
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), before.batch_stats,
                         after.batch_stats)
  assert all(jax.tree.leaves(changed))


def test_the_logits_and_attention_scores_come_out_of_the_matmul_in_float32(bf16_step):
  """The classifier's and the attention's matmuls take bfloat16 and accumulate and return
  float32 (preferred_element_type), rather than being rounded to bfloat16 and cast back."""
  dots = [e for e in _equations(bf16_step[3].jaxpr) if e.primitive.name == 'dot_general'
          and all(v.aval.dtype == BF16 for v in e.invars)]
  # (The dimensions in any order: einsum may transpose after the matmul.)
  outputs = {(tuple(sorted(e.outvars[0].aval.shape)), e.outvars[0].aval.dtype) for e in dots}
  assert ((8, 10), F32) in outputs           # the logits: batch x classes
  assert ((2, 4, 8, 16), F32) in outputs     # the scores: batch, heads, 4x4 queries, 2x2 keys


def test_the_softmaxes_and_the_loss_are_float32(bf16_step):
  """The tiny network's activations have no exponential: every exp, log and max of the step is
  a softmax's (the attention's, the loss's) and its gradient's."""
  _, _, metrics, jaxpr = bf16_step
  softmax_ops = [e for e in _equations(jaxpr.jaxpr)
                 if e.primitive.name in ('exp', 'log', 'reduce_max')]
  assert len(softmax_ops) >= 4
  assert all(v.aval.dtype == F32 for e in softmax_ops for v in e.invars)
  assert metrics['loss'].dtype == F32 and np.isfinite(metrics['loss'])
