"""Training: the run directory, checkpoints, metrics, optimizers, the steps and the loop."""

from mobilenet_jax.train.loop import (evaluate_imported, evaluate_latest, restore_latest_run,
                                      train_and_evaluate)

__all__ = ['evaluate_imported', 'evaluate_latest', 'restore_latest_run', 'train_and_evaluate']
