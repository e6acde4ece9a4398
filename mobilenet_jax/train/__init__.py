"""Training: the run directory, checkpoints, metrics, optimizers, the steps and the loop.

The loop's names are imported when first used, so that the step's own modules (parallel, steps,
optim, mixing) import without the loop's input pipeline, i.e. without TensorFlow: the speed
benchmark runs them on GPU machines whose image has none.
"""

import importlib

__all__ = ['evaluate_imported', 'evaluate_latest', 'restore_latest_run', 'train_and_evaluate']


def __getattr__(name: str):
  if name in __all__:
    return getattr(importlib.import_module('mobilenet_jax.train.loop'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
