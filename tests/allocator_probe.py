"""Run as `python -m tests.allocator_probe`: prints whether tcmalloc is mapped into the process."""

from mobilenet_jax import allocator

if __name__ == '__main__':
  allocator.reexec_with_tcmalloc('tests.allocator_probe')
  with open('/proc/self/maps') as maps:
    print('tcmalloc' if 'libtcmalloc' in maps.read() else 'system')
