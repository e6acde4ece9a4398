"""Run as `python -m tests.tools.allocator_probe`: prints whether tcmalloc is in the process,
and the release rate it was given."""

import os

from mobilenet_jax.tools import allocator

if __name__ == '__main__':
  allocator.reexec_with_tcmalloc('tests.tools.allocator_probe')
  with open('/proc/self/maps') as maps:
    print('tcmalloc' if 'libtcmalloc' in maps.read() else 'system',
          os.environ.get('TCMALLOC_RELEASE_RATE', '-'))
