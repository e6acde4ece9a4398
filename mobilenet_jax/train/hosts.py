"""Decisions that every host of a run must take alike, taken once and shared.

Whether a run resumes, from which checkpoint, and whether a checkpoint is damaged are read from
files; hosts that each read them for themselves can see different things (a file written a
moment later, a listing of an object store that is not yet consistent) and then take different
paths through the same collective program, which hangs or trains different weights. So process
0 decides and the others receive its answer: a collective, so no host acts before all have
reached it.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils


def from_first_host(value: int) -> int:
  """Process 0's `value`, on every host; `value` itself on one."""
  if jax.process_count() == 1:
    return int(value)
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def any_host(flag: bool) -> bool:
  """Whether `flag` holds on any host (every host learns the same answer)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))
