"""What 'auto' chose (`implementations.choose`), and the one line a run prints of it: a run's first
step would otherwise open with a line per layer shape (27 for V4 Conv-S)."""

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Choice:
  """One 'auto' decision: what it chose for which layer shapes, and how."""
  field: str
  op: str       # the op and its input shapes
  choice: str
  how: str      # 'measured: ...', 'cached in PATH' or "process 0's choice"
  seconds: float  # spent measuring; 0 when read from the cache or sent by process 0
  differentiated: bool

  def __str__(self) -> str:
    mode = '' if self.differentiated else ', forward pass only'
    return f'{self.field}=auto for {self.op}: {self.choice} ({self.how}{mode})'


def summary(chosen: Sequence[Choice], path: str) -> str:
  """One line for `chosen`: how many layer shapes, how many measured and in how long, where the
  cache (`path`) is; 'auto: 26 layer shapes measured in 14 s, cached in ~/.cache/...'."""
  measured = [c for c in chosen if c.how.startswith('measured')]
  cached = [c for c in chosen if c.how.startswith('cached')]
  seconds = f'{sum(c.seconds for c in measured):.0f} s'
  line = f'auto: {len(chosen)} layer shapes'
  if not any(c.differentiated for c in chosen):
    line += ' (forward pass only)'
  if len(measured) == len(chosen):
    return f'{line} measured in {seconds}, cached in {path}'
  if len(cached) == len(chosen):
    return f'{line} read from the cache in {path}'
  if not measured and not cached:
    return f"{line}: process 0's choices"
  return (f'{line}: {len(measured)} measured in {seconds}, {len(cached)} read from the cache in '
          f'{path}')
