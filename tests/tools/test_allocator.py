"""The entry points run with tcmalloc (installed by the setup) unless told to keep malloc."""

import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _probe(**env) -> str:
  environ = {k: v for k, v in os.environ.items()
             if k not in ('LD_PRELOAD', 'MOBILENET_JAX_MALLOC', 'TCMALLOC_RELEASE_RATE')}
  out = subprocess.run([sys.executable, '-m', 'tests.tools.allocator_probe', '--flag=kept'],
                       cwd=_ROOT, env={**environ, **env}, capture_output=True, text=True,
                       check=True)
  return out.stdout.strip()


# Release rate 0: tcmalloc keeps freed spans instead of handing them back to be faulted in again.
@pytest.mark.parametrize('env, expected', [({}, 'tcmalloc 0'),
                                           ({'TCMALLOC_RELEASE_RATE': '2'}, 'tcmalloc 2'),
                                           ({'MOBILENET_JAX_MALLOC': 'system'}, 'system -')])
def test_entry_points_preload_tcmalloc(env, expected):
  assert _probe(**env) == expected
