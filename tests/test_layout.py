"""The package's layering: each group imports only from itself and the groups below it."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'mobilenet_jax'
# Lowest first; README's Layout section states the same order.
GROUPS = ('errors', 'ops', 'models', 'data', 'interop', 'train', 'tools',
          '_factory')  # the public API's machinery, which `__init__` re-exports
MODULES = sorted(p for p in PACKAGE.rglob('*.py'))


def _group(module: str) -> str:
  """'mobilenet_jax.models.blocks' -> 'models'; the flat core module names itself."""
  return module.split('.')[1]


def _imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f'{node.module}.{alias.name}' for alias in node.names)
    elif isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
  return {n for n in names if n.startswith('mobilenet_jax.')}


@pytest.mark.parametrize('path', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_higher_group(path):
  own = path.relative_to(PACKAGE).parts[0].removesuffix('.py')
  if own == '__init__':
    return
  for name in _imports(path):
    theirs = _group(name)
    assert GROUPS.index(theirs) <= GROUPS.index(own), f'{own} imports {name}'


def test_every_module_is_in_a_group_and_short():
  for path in MODULES:
    assert path.relative_to(PACKAGE).parts[0].removesuffix('.py') in (*GROUPS, '__init__')
    assert len(path.read_text().splitlines()) <= 300, path
