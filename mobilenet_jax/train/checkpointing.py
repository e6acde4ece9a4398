"""Orbax checkpoints of the train state in the run directory's `checkpoints/`, which prove
themselves on restore.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a process
killed at any moment leaves the last finished checkpoint to resume from. That does not cover a
file damaged afterwards (a truncated copy, a bad disk): orbax checksums only the index of a
zarr3 shard (crc32c), not the arrays' bytes, and may restore damaged data silently. So once a
save is committed, a thread of ours hashes the files it wrote into
`checkpoints/<step>.integrity.json`, off the training path (the state is never copied for it);
a restore first checks the files against it on process 0, and a step that fails to match or to
restore is moved aside (`<step>.corrupt`, which orbax does not take for a step) for the previous
one. Process 0 takes that decision for every host (`hosts.py`).

The folder goes through `etils.epath`, as orbax's own files do: a local folder, gs://, s3://.
"""

import dataclasses
import errno
import os
import weakref
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from mobilenet_jax.errors import CheckpointWriteError, ConfigError
from mobilenet_jax.train import hosts, manifests
from mobilenet_jax.train import workdir as run_dir

CORRUPT_SUFFIX = '.corrupt'

# The manifest thread of each manager's last save, joined before the next save or a restore.
_manifest_writers: 'weakref.WeakKeyDictionary[ocp.CheckpointManager, manifests.Writer]' = (
    weakref.WeakKeyDictionary())
# Managers that save on the calling thread: their manifests are written there too, after the save
# (a background thread would gain nothing, and tests' tfds.testing.mock_data, which swaps in a
# process-wide mock file system while a dataset opens, would catch its reads).
_synchronous: 'weakref.WeakSet[ocp.CheckpointManager]' = weakref.WeakSet()


def checkpoint_dir(workdir: str) -> epath.Path:
  """The run's `checkpoints/` folder; ConfigError for a store that orbax cannot write to."""
  try:
    path = epath.Path(workdir)
  except KeyError:  # epath's registry of URI schemes
    raise ConfigError(
        f'--workdir={workdir} is on a store that orbax cannot write checkpoints to; give a local '
        'folder, gs://... or s3://...') from None
  if not str(workdir).partition('://')[1]:
    path = path.absolute()
  return path / run_dir.CHECKPOINTS_DIR


def create_manager(workdir: str, keep: int, asynchronous: bool = True) -> ocp.CheckpointManager:
  manager = ocp.CheckpointManager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           cleanup_tmp_directories=True,
                                           enable_async_checkpointing=asynchronous))
  if not asynchronous:
    _synchronous.add(manager)
  return manager


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Starts saving `state` as `step` (in the background when the manager is asynchronous), and
  its manifest after it, in a thread of ours: this thread neither copies nor hashes the state.

  A write that fails (a full disk) raises CheckpointWriteError naming the last intact step, and
  leaves no partial folder behind.
  """
  finish(manager)
  try:
    manager.save(step, args=ocp.args.StandardSave(state), force=True)
  except Exception as error:  # pylint: disable=broad-exception-caught
    raise _write_error(manager, step, error) from None
  if jax.process_index() == 0:
    writer = _manifest_writers[manager] = manifests.Writer(manager.directory, manager.is_saving_in_progress, step)
    if manager in _synchronous:
      writer.run()  # the save has blocked for its write already
    else:
      writer.start()


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
  """Waits until the last save and its manifest are committed; raises CheckpointWriteError if
  either failed."""
  _wait(manager)
  writer = _manifest_writers.pop(manager, None)
  if writer is not None:
    if writer.is_alive():
      writer.join()
    if writer.error is not None:
      raise _write_error(manager, writer.step, writer.error)
  _remove_orphaned_manifests(manager)


def _write_error(manager: ocp.CheckpointManager, step: int | None,
                 error: Exception) -> CheckpointWriteError:
  directory = epath.Path(manager.directory)
  for partial in directory.glob(f'{step}.orbax-checkpoint-tmp*'):
    partial.rmtree(missing_ok=True)
  integrity = manifests.path(manager.directory, step)
  if step is not None and not (directory / str(step)).is_dir():
    integrity.unlink(missing_ok=True)
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
  for path in epath.Path(manager.directory).glob(f'*{manifests.SUFFIX}'):
    if path.name.removesuffix(manifests.SUFFIX) not in kept:
      path.unlink(missing_ok=True)


def _saved_tree(manager: ocp.CheckpointManager, step: int) -> Any | None:
  """The metadata tree of the checkpoint of `step`; None when unreadable (then the restore
  fails, as for any damage)."""
  try:
    item = epath.Path(manager.directory) / str(step) / 'default'
    saved = ocp.StandardCheckpointHandler().metadata(item)
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


def _agreed_step(manager: ocp.CheckpointManager) -> int | None:
  """The newest step whose files match their manifest, as process 0 finds it, on every host.
  Process 0 moves aside the steps that do not match on its way; -1 is shared for none."""
  step = -1
  if jax.process_index() == 0:
    manager.reload()
    for candidate in sorted(manager.all_steps(), reverse=True):
      problem = manifests.verify_files(manager.directory, candidate)
      if problem is None:
        step = candidate
        break
      _move_aside(manager, candidate, problem)
  step = hosts.from_first_host(step)  # no host goes on before process 0 has moved its steps
  manager.reload()
  return None if step < 0 else step


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> Any | None:
  """The latest intact checkpoint, restored into `abstract_state`'s shapes and shardings.

  Newest first, each step must match its manifest (process 0 checks the files) and restore on
  every host; one that does not is moved aside with a line saying so, and the step before it
  is tried. Every host restores the step process 0 chose. A checkpoint of an older version,
  which lacks fields the state has gained since, restores into those it has.
  """
  finish(manager)  # a save of this session is committed, and its manifest written
  while (step := _agreed_step(manager)) is not None:
    saved = _saved_tree(manager, step)
    _check_shapes(manager, step, saved, abstract_state)
    try:
      state = _restore(manager, step, saved, abstract_state)
      problem = manifests.verify_arrays(manager.directory, step, state)
    except Exception as error:  # pylint: disable=broad-exception-caught
      problem = f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'
    if not hosts.any_host(problem is not None):
      fill = getattr(state, 'with_fields_added_since', None)
      return fill() if fill else state
    if jax.process_index() == 0:
      _move_aside(manager, step, problem or 'it failed to restore on another host')
  return None


def _move_aside(manager: ocp.CheckpointManager, step: int, problem: str) -> None:
  """On process 0: renames `step` to `<step>.corrupt`, its manifest within it."""
  directory = epath.Path(manager.directory)
  target = directory / f'{step}{CORRUPT_SUFFIX}'
  target.rmtree(missing_ok=True)
  (directory / str(step)).replace(target)
  integrity = manifests.path(manager.directory, step)
  if integrity.exists():
    integrity.replace(target / 'integrity.json')
  print(f'checkpoint of step {step} is damaged ({problem}); moved aside to {target}',
        flush=True)
