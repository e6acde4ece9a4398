"""Orbax checkpoints of the train state in the run directory's `checkpoints/`, which prove
themselves on restore.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a process
killed at any moment leaves the last finished checkpoint to resume from. That does not cover a
file damaged afterwards (a truncated copy, a bad disk), which orbax may restore silently. So
before each save the state's arrays are hashed into `checkpoints/<step>.integrity.json`; a
restore checks every array against it, and a step that fails to restore or to match is moved
aside (`<step>.corrupt`, which orbax does not take for a step) for the previous one.
"""

import dataclasses
import errno
import glob
import hashlib
import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from mobilenet_jax.errors import CheckpointWriteError, ConfigError
from mobilenet_jax.train import workdir as run_dir

INTEGRITY_SUFFIX = '.integrity.json'
CORRUPT_SUFFIX = '.corrupt'


def create_manager(workdir: str, keep: int, asynchronous: bool = True) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), run_dir.CHECKPOINTS_DIR),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           cleanup_tmp_directories=True,
                                           enable_async_checkpointing=asynchronous))


def _host_value(x: Any) -> np.ndarray:
  """A replicated array's value on this host (the whole array is not addressable on several)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(x)


def checksums(state: Any) -> dict[str, str]:
  """A digest of every array of `state`, by its path in the tree."""
  leaves = jax.tree_util.tree_leaves_with_path(state)
  return {jax.tree_util.keystr(path): hashlib.blake2b(
      np.ascontiguousarray(_host_value(leaf)).tobytes(), digest_size=16).hexdigest()
          for path, leaf in leaves}


def _integrity_path(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(manager.directory), f'{step}{INTEGRITY_SUFFIX}')


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Starts saving `state` as `step` (in the background when the manager is asynchronous).

  A write that fails (a full disk) raises CheckpointWriteError naming the last intact step, and
  leaves no partial folder behind.
  """
  finish(manager)
  try:
    if jax.process_index() == 0:
      _write_atomically(_integrity_path(manager, step), json.dumps(checksums(state)))
    manager.save(step, args=ocp.args.StandardSave(state), force=True)
  except Exception as error:  # pylint: disable=broad-exception-caught
    raise _write_error(manager, step, error) from None


def _wait(manager: ocp.CheckpointManager) -> None:
  saving = manager.latest_step()  # orbax lists a step from the start of its save
  try:
    manager.wait_until_finished()
  except Exception as error:  # pylint: disable=broad-exception-caught
    raise _write_error(manager, saving, error) from None


def check(manager: ocp.CheckpointManager) -> None:
  """Raises CheckpointWriteError once a background save has failed: called every step, so that
  a full disk is reported at the save that hit it, not at the next one."""
  if not manager.is_saving_in_progress():
    _wait(manager)


def finish(manager: ocp.CheckpointManager) -> None:
  """Waits until the last save is committed; raises CheckpointWriteError if it failed."""
  _wait(manager)
  _remove_orphaned_manifests(manager)


def _write_atomically(path: str, text: str) -> None:
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def _write_error(manager: ocp.CheckpointManager, step: int | None,
                 error: Exception) -> CheckpointWriteError:
  directory = str(manager.directory)
  for partial in glob.glob(os.path.join(directory, f'{step}.orbax-checkpoint-tmp*')):
    shutil.rmtree(partial, ignore_errors=True)
  if step is not None and os.path.exists(_integrity_path(manager, step)) and not os.path.isdir(
      os.path.join(directory, str(step))):
    os.remove(_integrity_path(manager, step))
  manager.reload()
  intact = [s for s in manager.all_steps() if s != step]
  number = getattr(error, 'errno', None)
  full = number == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(error)  # tensorstore's text
  if full or number:
    reason = os.strerror(errno.ENOSPC if full else number)
  else:
    reason = (str(error).splitlines() or [repr(error)])[0][:200]
  hint = ' (free some space)' if full else ''
  return CheckpointWriteError(
      f'could not write the checkpoint of step {step} in {directory}: {reason}; the last intact '
      f'checkpoint is {f"step {max(intact)}" if intact else "none"}; rerun the same command'
      f'{hint} to resume from it')


def _remove_orphaned_manifests(manager: ocp.CheckpointManager) -> None:
  """Drops the manifests of steps that orbax deleted (keep_checkpoints)."""
  if jax.process_index() != 0:
    return
  kept = {str(s) for s in manager.all_steps()}
  for path in glob.glob(os.path.join(str(manager.directory), f'*{INTEGRITY_SUFFIX}')):
    step = os.path.basename(path).removesuffix(INTEGRITY_SUFFIX)
    if step not in kept:
      os.remove(path)


def _saved_tree(manager: ocp.CheckpointManager, step: int) -> Any | None:
  """The metadata tree of the checkpoint of `step`; None when unreadable (then the restore
  fails, as for any damage)."""
  try:
    item = os.path.join(str(manager.directory), str(step), 'default')
    saved = ocp.StandardCheckpointHandler().metadata(epath.Path(item))
  except Exception:  # pylint: disable=broad-exception-caught
    return None
  return getattr(saved, 'tree', saved)


def _absent_fields(saved: Any, abstract_state: Any) -> list[str]:
  """The fields of `abstract_state` that the checkpoint `saved` lacks: it was written by an
  older version, before the state gained them."""
  if not isinstance(saved, dict) or not dataclasses.is_dataclass(abstract_state):
    return []
  fields = {_names(path)[0] for path, _ in jax.tree_util.tree_leaves_with_path(abstract_state)}
  return sorted(name for name in fields if name not in saved)


def _restore(manager: ocp.CheckpointManager, step: int, saved: Any, abstract_state: Any) -> Any:
  """The checkpoint of `step` in `abstract_state`'s shapes; the fields it lacks (`saved` is
  its metadata) are None, for the state to fill in (`with_fields_added_since`)."""
  absent = _absent_fields(saved, abstract_state)
  if not absent:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  # Orbax restores only into the tree that was saved: the fields it holds, as a dict.
  present = {name: getattr(abstract_state, name) for name in saved}
  restored = manager.restore(step, args=ocp.args.StandardRestore(present))
  return abstract_state.replace(**restored, **dict.fromkeys(absent))


def _check_shapes(manager: ocp.CheckpointManager, step: int, saved: Any,
                  abstract_state: Any) -> None:
  """Raises ConfigError when the checkpoint holds another architecture than the config's: the
  config is wrong, not the checkpoint, so nothing is moved aside."""
  if saved is None:
    return
  saved_shapes = {_names(p): tuple(getattr(m, 'shape', ()))
                  for p, m in jax.tree_util.tree_leaves_with_path(saved)}
  for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
    key = _names(path)
    if key in saved_shapes and saved_shapes[key] != tuple(leaf.shape):
      raise ConfigError(f'the checkpoint of step {step} in {manager.directory} does not fit the '
                        f'config: {"/".join(key)} has shape {saved_shapes[key]}, the config '
                        f'gives {tuple(leaf.shape)}; use the run\'s own config.json')


def _names(path) -> tuple[str, ...]:
  """A tree path as plain names, alike for a restored dict and the TrainState it came from."""
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def _verify(manager: ocp.CheckpointManager, step: int, state: Any) -> str | None:
  """Why the restored `state` of `step` is not what was saved, or None when it is."""
  path = _integrity_path(manager, step)
  if not os.path.exists(path):
    return None  # written before checkpoints carried manifests: trusted as orbax restored it
  with open(path) as f:
    expected = json.load(f)
  got = checksums(state)
  bad = sorted(k for k in expected if got.get(k) != expected[k])
  return f'{len(bad)} arrays differ from what was saved (first: {bad[0]})' if bad else None


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> Any | None:
  """The latest intact checkpoint, restored into `abstract_state`'s shapes and shardings.

  Newest first, each step must restore and match its manifest; one that does not is moved
  aside with a line saying so, and the step before it is tried. A checkpoint of an older
  version, which lacks fields the state has gained since, restores into those it has.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    saved = _saved_tree(manager, step)
    _check_shapes(manager, step, saved, abstract_state)
    try:
      state = _restore(manager, step, saved, abstract_state)
      problem = _verify(manager, step, state)
    except Exception as error:  # pylint: disable=broad-exception-caught
      problem = f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'
    if problem is None:
      fill = getattr(state, 'with_fields_added_since', None)
      return fill() if fill else state
    _move_aside(manager, step, problem)
  return None


def _move_aside(manager: ocp.CheckpointManager, step: int, problem: str) -> None:
  directory = str(manager.directory)
  target = os.path.join(directory, f'{step}{CORRUPT_SUFFIX}')
  if jax.process_index() == 0:
    shutil.rmtree(target, ignore_errors=True)
    os.replace(os.path.join(directory, str(step)), target)
    if os.path.exists(_integrity_path(manager, step)):
      os.replace(_integrity_path(manager, step), os.path.join(target, 'integrity.json'))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'checkpoint {step} moved aside')
  manager.reload()
  print(f'checkpoint of step {step} is damaged ({problem}); moved aside to {target}',
        flush=True)
