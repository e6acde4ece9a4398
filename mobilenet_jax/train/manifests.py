"""The manifest of a checkpoint: a digest of every file it wrote, in `<step>.integrity.json` beside
it, hashed by a thread of ours once orbax has committed the save (the state is never copied for
it), and checked before the step is restored (`checkpointing.restore_latest`). Checkpoints of
older versions carry a digest of every array instead, checked after the restore.
"""

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from etils import epath

SUFFIX = '.integrity.json'
_READ_BYTES = 1 << 24
_POLL_SECONDS = 0.05


def checksums(state: Any) -> dict[str, str]:
  """A digest of every array of `state`, by its path in the tree: the manifests of checkpoints
  written before they were hashed by file, still verified on restore."""
  def host_value(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = x.addressable_data(0)  # replicated: the whole array is not addressable on several
    return np.ascontiguousarray(np.asarray(x))
  return {jax.tree_util.keystr(path): hashlib.blake2b(host_value(leaf).tobytes(),
                                                      digest_size=16).hexdigest()
          for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def digest(path: epath.Path) -> str:
  """A file's digest, read in pieces (an array file can be larger than we want in memory)."""
  hasher = hashlib.blake2b(digest_size=16)
  with path.open('rb') as f:
    while piece := f.read(_READ_BYTES):
      hasher.update(piece)
  return hasher.hexdigest()


def file_checksums(step_dir: epath.Path) -> dict[str, str]:
  """A digest of every file of a committed checkpoint, by its path in the step's folder."""
  files = [folder / name for folder, _, names in step_dir.walk() for name in names]
  return {str(file.relative_to(step_dir)): digest(file) for file in sorted(files)}


def path(directory, step: int) -> epath.Path:
  """The manifest of the checkpoint of `step` in the manager's `directory`."""
  return epath.Path(directory) / f'{step}{SUFFIX}'


class Writer(threading.Thread):
  """Waits for a save to commit (`saving()` turns False), then hashes its files into the step's
  manifest (process 0: every host's files are in the one folder once orbax has committed it)."""

  def __init__(self, directory, saving: Callable[[], bool], step: int):
    super().__init__(name=f'checkpoint {step} manifest', daemon=True)
    self.directory, self.saving, self.step, self.error = directory, saving, step, None

  def run(self) -> None:
    # Polled, not `wait_until_finished`: that would take the error of a failed save, and the
    # step from orbax's list, before the calling thread reports them (`check`, `finish`).
    while self.saving():
      time.sleep(_POLL_SECONDS)
    try:
      step_dir = epath.Path(self.directory) / str(self.step)
      if step_dir.is_dir():  # renamed into place: committed (a failed save leaves none)
        _write_atomically(path(self.directory, self.step),
                          json.dumps({'files': file_checksums(step_dir)}))
    except Exception as error:  # pylint: disable=broad-exception-caught
      self.error = error


def _write_atomically(path: epath.Path, text: str) -> None:
  temporary = path.parent / (path.name + '.tmp')
  temporary.write_text(text)
  temporary.replace(path)


def read(directory, step: int) -> dict | None:
  """The manifest of `step`; None for a checkpoint written before checkpoints carried them
  (trusted as orbax restores it)."""
  manifest = path(directory, step)
  return json.loads(manifest.read_text()) if manifest.exists() else None


def verify_files(directory, step: int) -> str | None:
  """Why the files of `step` are not those that were saved, or None when they are."""
  expected = (read(directory, step) or {}).get('files')
  if expected is None:
    return None  # no manifest, or one of arrays (`verify_arrays`)
  try:
    got = file_checksums(epath.Path(directory) / str(step))
  except OSError as error:
    return f'{type(error).__name__}: {error}'
  bad = sorted(k for k in expected.keys() | got.keys() if got.get(k) != expected.get(k))
  return f'{len(bad)} files differ from what was saved (first: {bad[0]})' if bad else None


def verify_arrays(directory, step: int, state: Any) -> str | None:
  """Why the restored `state` of `step` differs from a manifest of arrays (as checkpoints
  carried before their files were hashed), or None."""
  expected = read(directory, step)
  if expected is None or 'files' in expected:
    return None
  got = checksums(state)
  bad = sorted(k for k in expected if got.get(k) != expected[k])
  return f'{len(bad)} arrays differ from what was saved (first: {bad[0]})' if bad else None
