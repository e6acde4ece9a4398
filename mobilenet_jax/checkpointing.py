"""Orbax checkpoints of the train state, and the workdir's record of what it trains.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a process
killed at any moment leaves the last finished checkpoint to resume from.
"""

import json
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp

from mobilenet_jax import architecture
from mobilenet_jax.config_errors import ConfigError

CONFIG_FILE = 'config.json'


def check_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Raises if `workdir` holds a run of another architecture; True if it holds a run at all.

  Runs resume when only the schedule, logging or data fields differ; any change that alters the
  parameters (table, width, classes) would make the checkpoint unusable, so it is refused before
  anything in the workdir is touched.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    saved = ml_collections.ConfigDict(json.load(f)).model
  model = config.model
  if (architecture.resolve(saved) != architecture.resolve(model)
      or saved.num_classes != model.num_classes):
    changed = sorted(key for key in model.keys() if key in saved
                     and _plain(saved[key]) != _plain(model[key]))
    raise ConfigError(f'--workdir={workdir} holds a run of another architecture (changed: '
                      f'{", ".join("model." + k for k in changed)}); resume it with its own config '
                      'or start a new workdir')
  return True


def _plain(value: Any) -> Any:
  """JSON turns tuples into lists; compare configs in JSON's terms."""
  return json.loads(json.dumps(value))


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))


def create_manager(workdir: str, keep: int, asynchronous: bool = True) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
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
