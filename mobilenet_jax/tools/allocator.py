"""tcmalloc for the command-line entry points, which on CPU makes a train step up to 1.6x faster.

XLA:CPU allocates each execution's temporary buffers (hundreds of MB for a train step) with
malloc. glibc serves blocks that large with mmap and unmaps them when they are freed, so every
step faults them back in page by page: for V3-Small's Fashion-MNIST step on two cores, 54,000
page faults and 110 ms of kernel time in a 195 ms step. tcmalloc keeps freed memory for reuse
(122 ms a step). glibc's own knobs (no mmap, one arena) remove the faults but serialise the
allocations and gain nothing. tcmalloc itself, at its default release rate, hands freed spans
back to the system a little at a time, and a step whose buffers are large enough meets the same
faults again (V4 Conv-S at 224/32: 21,600 faults and 510 ms of kernel time a step, 722 against
372 ms); the entry points set TCMALLOC_RELEASE_RATE=0 (unless set), which keeps the process at
its peak memory, reached every step anyway. An allocator has to be in the process before it
starts, so the entry point re-executes itself once with LD_PRELOAD; set
MOBILENET_JAX_MALLOC=system to keep the C library's malloc.
"""

import ctypes.util
import os
import sys

OPT_OUT = 'MOBILENET_JAX_MALLOC'
INSTALL_HINT = 'apt-get install libtcmalloc-minimal4'


def reexec_with_tcmalloc(module: str) -> None:
  """Re-runs `python -m module ARGS` with tcmalloc preloaded, unless it is loaded or missing."""
  preload = os.environ.get('LD_PRELOAD', '')
  if os.environ.get(OPT_OUT) == 'system' or 'tcmalloc' in preload or sys.platform != 'linux':
    return
  library = ctypes.util.find_library('tcmalloc_minimal') or ctypes.util.find_library('tcmalloc')
  if library is None:
    print(f'note: without tcmalloc ({INSTALL_HINT}) steps on CPU run up to 1.6x slower',
          file=sys.stderr)
    return
  env = dict(os.environ, LD_PRELOAD=':'.join(filter(None, (library, preload))),
             # tcmalloc reports every allocation over 1 GiB on stderr by default.
             TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=str(1 << 40),
             TCMALLOC_RELEASE_RATE=os.environ.get('TCMALLOC_RELEASE_RATE', '0'))
  os.execve(sys.executable, [sys.executable, '-m', module, *sys.argv[1:]], env)
