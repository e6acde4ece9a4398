"""A training process that dies with the sweep that started it.

A sweep that is killed (SIGKILL, or its terminal closed) must not leave its runs training on
beside the runs of the rerun sweep. The sweep names itself in MOBILENET_JAX_PARENT_PID; the
child asks Linux to send it SIGTERM when that parent dies (prctl PR_SET_PDEATHSIG), which the
training loop turns into a checkpoint and a clean exit. Standard library only: this runs before
JAX loads.
"""

import ctypes
import os
import signal
import sys

PARENT_PID = 'MOBILENET_JAX_PARENT_PID'
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
  """SIGTERM to this process when the parent named in MOBILENET_JAX_PARENT_PID exits."""
  expected = os.environ.get(PARENT_PID)
  if not expected or not sys.platform.startswith('linux'):
    return
  libc = ctypes.CDLL(None, use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
  if os.getppid() != int(expected):  # the parent died before the request was made
    os.kill(os.getpid(), signal.SIGTERM)
