"""Where a run directory lives: a local folder or a store that TensorFlow's file system knows
(gs://, s3:// with tensorflow-io, ram://). Every run file (`workdir.py`, sweeps, reports) is
read and written through these functions, with `tf.io.gfile`; the checkpoints go through orbax's
`etils.epath` (`checkpointing.py`).
"""

import json
import os
import posixpath
from typing import Any

from mobilenet_jax.errors import ConfigError


def gfile():
  """`tf.io.gfile`, imported when a run's file is first touched: the launchers that import this
  module (sweeps, reports) need no TensorFlow otherwise."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.io.gfile


def is_url(workdir: str) -> bool:
  """Whether `workdir` names a store (gs://...), not a local folder."""
  return '://' in str(workdir)


def join(workdir: str, *names: str) -> str:
  """A path in `workdir`; '/'-joined for a URL, whatever the local separator."""
  return (posixpath if is_url(workdir) else os.path).join(str(workdir), *names)


def read_json(path: str) -> Any:
  """A JSON file a run writes (results, config, sweep records); {} when it is not there yet."""
  if not gfile().exists(path):
    return {}
  with gfile().GFile(path) as f:
    return json.load(f)


def write_json(path: str, record: Any) -> None:
  write_atomically(path, json.dumps(record, indent=2))


def write_atomically(path: str, text: str) -> None:
  """Writes `path` whole or not at all: a reader (another host, a report) never sees half."""
  with gfile().GFile(path + '.tmp', 'w') as f:
    f.write(text)
  gfile().rename(path + '.tmp', path, overwrite=True)


def check_writable(workdir: str) -> None:
  """Raises ConfigError unless `workdir` is a folder that can be written, or can be made one
  (on a store, whether it can be written shows at the first write)."""
  if is_url(workdir):
    if gfile().exists(workdir) and not gfile().isdir(workdir):
      raise ConfigError(f'--workdir={workdir} is a file; give a folder for the run')
    return
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f'--workdir={workdir} is a file; give a folder for the run')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConfigError(f'--workdir={workdir} cannot be made: {existing} is a file')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f'--workdir={workdir} is not writable: no permission on {existing}')
