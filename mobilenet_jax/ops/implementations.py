"""Choosing among equivalent implementations of an op, per backend."""

from collections.abc import Iterable, Mapping

import jax

from mobilenet_jax import errors


def resolve(field: str, name: str, implementations: Iterable[str],
            fastest_on_backend: Mapping[str, str], default: str) -> str:
  """`name` itself, or for 'auto' the fastest measured on the current backend."""
  errors.check_choice(field, name, ('auto', *implementations))
  if name == 'auto':
    return fastest_on_backend.get(jax.default_backend(), default)
  return name
