"""The Python API as the docs print it: every ```python block of docs/python_api.md and of the
README runs as printed, in a fresh interpreter from the repository's root."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = ('docs/python_api.md', 'README.md')


def _blocks() -> list[tuple[str, int, str]]:
  blocks = []
  for page in PAGES:
    path = ROOT / page
    text = path.read_text() if path.exists() else ''
    for i, match in enumerate(re.finditer(r'^```python\n(.*?)^```', text, re.S | re.M)):
      # The README prints the API page's first block: the same code runs once.
      if all(match.group(1) != code for _, _, code in blocks):
        blocks.append((page, i, match.group(1)))
  return blocks


BLOCKS = _blocks()


def test_the_pages_print_an_api_block():
  assert BLOCKS, f'no ```python block in {" or ".join(PAGES)}'
  assert re.search(r'^```python\n', (ROOT / 'README.md').read_text(), re.M), (
      'the README prints no Python API block')


@pytest.mark.parametrize('page, index, code', BLOCKS, ids=[f'{p}:{i}' for p, i, _ in BLOCKS])
def test_python_block_runs_as_printed(page, index, code):
  del index
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, f'{page}:\n{result.stderr[-3000:]}'
