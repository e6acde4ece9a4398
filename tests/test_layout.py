"""The package's layering (each group imports only from itself and the groups below it), and
the README as a front door whose every link resolves."""

import ast
import pathlib
import re

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


ROOT = PACKAGE.parent
README = ROOT / 'README.md'
PAGES = sorted([README, *(ROOT / 'docs').glob('*.md'), *(ROOT / 'docs').glob('*/*.md')])
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')  # [text](target) and ![image](target)


def _anchors(page: pathlib.Path) -> set[str]:
  """GitHub's anchors for a page's headings: lower case, punctuation but '-' and '_' dropped,
  spaces made hyphens. Lines in code fences (a table row's '# block ...') are not headings."""
  anchors, fenced = set(), False
  for line in page.read_text().splitlines():
    fenced ^= line.startswith('```')
    if not fenced and line.startswith('#'):
      heading = line.lstrip('#').strip().lower()
      anchors.add(re.sub(r'[^\w\- ]', '', heading).replace(' ', '-'))
  return anchors


def test_the_readme_is_a_front_door_of_at_most_250_lines():
  text = README.read_text()
  assert len(text.splitlines()) <= 250
  # The quick start's two commands, exactly: .ci/run and newcomers run them as printed.
  assert ('bash setup.sh && python -m experiments.train '
          '--config=configs/v4_conv_small.py:fashion_mnist --workdir=runs/v4s\n'
          'python -m pytest -q\n') in text
  for section in ('Quick start', 'The model zoo', 'Train', 'Evaluate', 'Sweep', 'Export',
                  'Predict', 'Python API', 'Headline figures', 'Layout'):
    assert f'\n## {section}\n' in text, section


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
  for target in LINK.findall(page.read_text()):
    if re.match(r'[a-z]+:', target):  # https:, mailto:
      continue
    path, _, anchor = target.partition('#')
    linked = (page.parent / path).resolve() if path else page
    assert linked.exists(), f'{page.name}: {target}'
    if anchor:
      assert anchor in _anchors(linked), f'{page.name}: {target}'
