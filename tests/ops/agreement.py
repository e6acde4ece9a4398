"""Equivalent implementations of an op: the same parameter tree, outputs and gradients."""

import jax
import jax.numpy as jnp
import numpy as np


def assert_implementations_agree(modules: dict, reference: str, x: jax.Array):
  """Same parameter tree, outputs and gradients (parameters and input) within 1e-5."""
  params = modules[reference].init(jax.random.key(1), x)
  cotangent = None
  results = {}
  for impl, module in modules.items():
    assert jax.tree.map(jnp.shape, module.init(jax.random.key(1), x)) == jax.tree.map(
        jnp.shape, params)
    y, vjp = jax.vjp(lambda p, x, m=module: m.apply(p, x), params, x)
    if cotangent is None:
      cotangent = jax.random.normal(jax.random.key(2), y.shape)
    results[impl] = (y, *vjp(cotangent))
  want_all = results.pop(reference)
  for impl, result in results.items():
    for got, want in zip(jax.tree.leaves(result), jax.tree.leaves(want_all)):
      np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=impl)
