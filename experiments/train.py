r"""Trains a MobileNet: `python -m experiments.train --config=CONFIG --workdir=DIR [overrides]`.

  python -m experiments.train --config=configs/v3_small.py:fashion_mnist --workdir=/tmp/v3s
  python -m experiments.train --config=configs/v3_large.py --workdir=DIR --config.batch_size=512

Given the same command again, a run resumes from its latest checkpoint. On several hosts, start
the same command on each with --distributed (jax.distributed.initialize() finds the cluster on
TPU pods and SLURM; elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
"""

from mobilenet_jax import allocator

if __name__ == '__main__':  # before JAX and TensorFlow are loaded
  allocator.reexec_with_tcmalloc('experiments.train')

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.cli import config_overrides
from mobilenet_jax import train
from mobilenet_jax.config_errors import ConfigError
from mobilenet_jax.datasets import DatasetUnavailable

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and results go.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize().')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  # Progress, evaluations and results are printed; library INFO logs (orbax's are many) are not.
  # Pass --verbosity=0 to see them.
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, config_overrides(sys.argv))
  except (ConfigError, DatasetUnavailable, FloatingPointError) as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
