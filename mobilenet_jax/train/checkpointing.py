"""Orbax checkpoints of the train state in the run directory's `checkpoints/`.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a process
killed at any moment leaves the last finished checkpoint to resume from.
"""

import os
from typing import Any

import orbax.checkpoint as ocp

from mobilenet_jax.train import workdir as run_dir


def create_manager(workdir: str, keep: int, asynchronous: bool = True) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), run_dir.CHECKPOINTS_DIR),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           cleanup_tmp_directories=True,
                                           enable_async_checkpointing=asynchronous))


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  manager.save(step, args=ocp.args.StandardSave(state), force=True)


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> Any | None:
  """The latest finished checkpoint restored into `abstract_state`'s shapes and shardings."""
  step = manager.latest_step()
  if step is None:
    return None
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
