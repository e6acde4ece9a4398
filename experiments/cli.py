"""What every command-line entry point shares: tcmalloc, quiet logs and one-line errors.

An entry point opens with `cli.preload_tcmalloc(__name__)` (before JAX or TensorFlow load), keeps
`main` to flags and printing, and ends with `cli.run(main)`. Every mistake a user can make (a
config value, a missing config file, an unknown variant, a misspelled field, a flag value, a
missing dataset, run or checkpoint, a diverged run) then ends the same way: one `error: ...` line
on stderr, exit status 1, no traceback. This module imports no JAX.
"""

import difflib
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags, logging
import ml_collections

# Before TensorFlow (the input pipeline) loads: it logs its CPU features at import, and on CPUs
# where oneDNN's custom ops are on, a line saying so whatever TF_CPP_MIN_LOG_LEVEL is. The
# pipeline's ops (decode, pad, crop, resize, RandAugment) gain nothing from oneDNN.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from mobilenet_jax.errors import Preempted, UserError
from mobilenet_jax.tools import allocator, lifetime


def preload_tcmalloc(module_name: str) -> None:
  """Re-executes the running entry point with tcmalloc preloaded (see tools/allocator.py).

  A no-op when imported rather than run, so tests can import entry points."""
  if module_name == '__main__':
    allocator.reexec_with_tcmalloc(sys.modules['__main__'].__spec__.name)


def config_overrides(argv: list[str]) -> tuple[str, ...]:
  """The --config.FIELD=VALUE flags of a command line, as given."""
  return tuple(arg for arg in argv if arg.startswith('--config.'))


def fail(message: str, status: int = 1, prefix: str = 'error: ') -> None:
  """Ends the program with one line; the message's other lines are joined onto it."""
  print(prefix + ' '.join(line.strip() for line in str(message).splitlines() if line.strip()),
        file=sys.stderr, flush=True)
  sys.exit(status)


def _check_config_files(argv: list[str]) -> None:
  # ml_collections defers a missing config file to the first use of the flag, with a traceback.
  for arg in argv[1:]:
    match = re.fullmatch(r'--(\w*config)=([^:]*)(:.*)?', arg)
    if match and not os.path.isfile(match.group(2)):
      fail(f'--{match.group(1)}={match.group(2)}: no such config file')


def _parse_flags(argv: list[str]) -> list[str]:
  _check_config_files(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    # A config file that raised while loading comes wrapped with its traceback; its last line
    # is the error itself ('mobilenet_jax.errors.ConfigError: config variant ...').
    lines = [line for line in str(e).splitlines() if line.strip()]
    if 'Traceback' in str(e):
      fail(f'{lines[0].rsplit(": ", 1)[0]}: ' + lines[-1].split(': ', 1)[-1])
    fail(str(e))
  except (AttributeError, KeyError):  # --config.PATH=... of a field the config does not have
    message = _unknown_override(argv)
    if message is None:
      raise
    fail(message)


def _unknown_override(argv: list[str]) -> str | None:
  """One line for the first --NAME.PATH=VALUE override whose PATH the config file of --NAME does
  not have, with the nearest name there (difflib); None when every path exists.

  ml_collections raises a KeyError (a section) or an AttributeError (a field) with a traceback
  and without the full path; the config is loaded again here, which its file did once already.
  """
  given = dict(re.fullmatch(r'--(\w+)=(.*)', arg).groups() for arg in argv[1:]
               if re.fullmatch(r'--\w+=.*', arg))
  for arg in argv[1:]:
    match = re.fullmatch(r'--(\w+)\.([\w.]+)(=.*)?', arg)
    if not match or match.group(1) not in given:
      continue
    name, path = match.group(1), match.group(2)
    holder = flags.FLAGS[name].parser.parse(given[name])
    if not isinstance(holder, ml_collections.ConfigDict):  # not a config file's flag
      continue
    parts = path.split('.')
    for depth, part in enumerate(parts):
      if not isinstance(holder, ml_collections.ConfigDict):
        return f'--{name}.{path}: {".".join(parts[:depth])} is a field, not a section'
      if part not in holder:
        where = '.'.join((name, *parts[:depth]))
        return f'--{name}.{path}: ' + _nearest(part, holder, where, depth == len(parts) - 1)
      holder = holder[part]
  return None


def _nearest(key: str, holder: ml_collections.ConfigDict, where: str, last: bool) -> str:
  kind = 'field' if last else 'section'
  names = sorted(k for k, v in holder.items() if last or isinstance(v, ml_collections.ConfigDict))
  near = difflib.get_close_matches(key, names, n=1)
  if near:
    return f'the config has no such {kind}. Did you mean "{near[0]}" instead of "{key}"?'
  return f'the config has no such {kind}; the {kind}s of {where} are: {", ".join(names)}'


def run(main: Callable[[list[str]], None]) -> None:
  """absl's app.run with the shared flag parsing, logging and error handling."""

  def guarded_main(argv: list[str]) -> None:
    # Results, progress and our own errors are printed; libraries' INFO and WARNING logs (orbax's
    # and TFDS's are many) are not, unless asked for with --verbosity=0.
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.ERROR)
    lifetime.die_with_parent()
    try:
      main(argv)
    except Preempted as e:  # not a mistake: a stop that kept its work
      fail(str(e), e.exit_status, prefix='')
    except UserError as e:
      fail(str(e), e.exit_status)

  app.run(guarded_main, flags_parser=_parse_flags)
