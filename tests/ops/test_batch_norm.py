"""Our batch norm is flax's, with another gradient: same variables and numbers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax.ops import batch_norm


@pytest.mark.parametrize('shape', [(4, 5, 3, 8), (6, 7)])
def test_batch_norm_matches_flax(shape):
  """Same variables, outputs, updated statistics and gradients (train mode), and eval outputs."""
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), shape)
  target = jax.random.normal(jax.random.key(1), shape)
  fields = {'momentum': 0.9, 'epsilon': 1e-3}
  modules = {'flax': nn.BatchNorm, 'ours': batch_norm.BatchNorm}
  variables = modules['flax'](False, **fields).init(jax.random.key(2), x)
  assert jax.tree.map(jnp.shape, batch_norm.BatchNorm(False, **fields).init(
      jax.random.key(2), x)) == jax.tree.map(jnp.shape, variables)
  params = {'scale': 0.5 + jax.random.uniform(jax.random.key(3), shape[-1:]),
            'bias': jax.random.normal(jax.random.key(4), shape[-1:])}
  results = {}
  for name, module in modules.items():
    def loss(params, x, module=module(use_running_average=False, **fields)):
      y, updates = module.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                                mutable=['batch_stats'])
      return jnp.sum(jnp.sin(y) * target), (y, updates['batch_stats'])
    # Compiled: op by op, the gradient's many small ops cost more than compiling them.
    (_, (y, stats)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        params, x)
    frozen = module(use_running_average=True, **fields)
    y_eval = jax.jit(frozen.apply)({'params': params, 'batch_stats': stats}, x)
    results[name] = (y, stats, grads, y_eval)
  for want, got in zip(*(jax.tree.leaves(results[name]) for name in modules)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.abs(results['ours'][2][1]).max() > 1e-3  # the input gradient is not trivially 0


def test_bfloat16_input_is_kept_as_the_residual_with_float32_statistics():
  """In bfloat16 compute the backward pass holds the input in bfloat16 (not a float32 copy, twice
  the memory); the statistics are accumulated in float32 all the same."""
  x = (3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 6, 6, 8))).astype(jnp.bfloat16)
  module = batch_norm.BatchNorm(use_running_average=False, momentum=0.0, dtype=jnp.bfloat16)
  variables = module.init(jax.random.key(1), x)

  def forward(params, x):
    return module.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                        mutable=['batch_stats'])

  (y, updates), backward = jax.vjp(forward, variables['params'], x)
  residuals = jax.tree.leaves(backward)  # what the backward pass holds
  activations = [r for r in residuals if r.size >= x.size]
  assert activations and all(r.dtype == jnp.bfloat16 for r in activations)
  assert sum(r.nbytes for r in residuals) < x.nbytes + 1024  # x once, and per-channel vectors
  assert y.dtype == jnp.bfloat16
  stats = updates['batch_stats']  # momentum 0: this batch's statistics
  assert stats['mean'].dtype == stats['var'].dtype == jnp.float32
  exact = np.asarray(x, np.float64).reshape(-1, 8)
  np.testing.assert_allclose(stats['mean'], exact.mean(0), rtol=1e-6)
  np.testing.assert_allclose(stats['var'], exact.var(0), rtol=1e-5)
  grads = backward((jnp.ones_like(y), jax.tree.map(jnp.zeros_like, updates)))
  assert grads[1].dtype == jnp.bfloat16
  assert {g.dtype for g in jax.tree.leaves(grads[0])} == {jnp.dtype('float32')}
