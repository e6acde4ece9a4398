r"""Trains a MobileNet: `python -m experiments.train --config=CONFIG --workdir=DIR [overrides]`.

  python -m experiments.train --config=configs/v3_small.py:fashion_mnist --workdir=/tmp/v3s
  python -m experiments.train --config=configs/v3_large.py --workdir=DIR --config.batch_size=512

Given the same command again, a run resumes from its latest checkpoint. SIGTERM or Ctrl-C stops
it after a checkpoint (exit status 143 or 130); a second one stops it at once. On several hosts,
start the same command on each with --distributed: TPU pods and SLURM are found by JAX; elsewhere
set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID.
"""

from experiments import cli

cli.preload_tcmalloc(__name__)

import sys  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from mobilenet_jax.train import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and results go.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, 'Join the other hosts of the run.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  if _DISTRIBUTED.value:
    parallel.initialize_hosts()
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, cli.config_overrides(sys.argv))


if __name__ == '__main__':
  cli.run(main)
