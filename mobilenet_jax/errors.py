"""The errors a user can fix, and the checks that raise them before anything is compiled.

Every `UserError` is printed by the command-line entry points as one `error: ...` line with exit
status 1 and no traceback, so each message must say on its own what is wrong and what to do.
Config messages name the field and what it may be, so a typo on the command line is fixed from
the message alone.
"""

from collections.abc import Iterable
from typing import Any


class UserError(Exception):
  """Something the user can fix; its message is the whole report."""
  exit_status = 1


class ConfigError(UserError, ValueError):
  """A config value is not allowed; the message names the field."""


class DatasetUnavailable(UserError, RuntimeError):
  """The dataset is not prepared and cannot be prepared without the user's help."""


class MissingRun(UserError, FileNotFoundError):
  """A workdir holds no run, or no checkpoint, where one was asked for."""


class NonFiniteLoss(UserError, FloatingPointError):
  """Training diverged; the message names the last good checkpoint."""


class WorkdirInUse(UserError):
  """Another process trains in this workdir; the message names it."""


class CheckpointWriteError(UserError, OSError):
  """A checkpoint could not be written (a full disk, say); the message names the last intact one."""


class Preempted(UserError):
  """A signal stopped training after a checkpoint; exits as the signal's default would."""

  def __init__(self, message: str, signal_number: int):
    super().__init__(message)
    self.exit_status = 128 + signal_number


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> Any:
  allowed = tuple(allowed)
  if value not in allowed:
    raise ConfigError(
        f'{field}={value!r} is not allowed; choose one of: '
        + ', '.join(repr(a) for a in allowed))
  return value


def check_positive(field: str, value: Any, *, allow_zero: bool = False) -> Any:
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
      value >= 0 if allow_zero else value > 0)
  if not ok:
    bound = '>= 0' if allow_zero else '> 0'
    raise ConfigError(f'{field}={value!r} is not allowed; it must be a number {bound}')
  return value


def check_int(field: str, value: Any, *, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ConfigError(
        f'{field}={value!r} is not allowed; it must be an integer >= {minimum}')
  return value


def check_probability(field: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
    raise ConfigError(f'{field}={value!r} is not allowed; it must be a probability in [0, 1]')
  return value


def check_range(field: str, value: Any, low: float, high: float) -> float:
  """A number in the half-open interval [low, high)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
    raise ConfigError(f'{field}={value!r} is not allowed; it must be a number in [{low}, {high})')
  return value
