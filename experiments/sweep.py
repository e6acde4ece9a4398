r"""Runs a sweep of training runs and reports it.

  python -m experiments.sweep --config=configs/v3_small.py:fashion_mnist \
      --sweep=configs/sweeps/width_multiplier.py --workdir=DIR [--parallel=N] [--dry_run] \
      [--config.num_train_steps=100 ...]

Each run trains in DIR/<run-name>/ through `python -m experiments.train`; given again, the same
command skips finished runs and resumes interrupted ones from their checkpoints. A failed run is
recorded (DIR/<run>/failure.json) and the others go on. --config.FIELD=VALUE flags apply to every
run. --dry_run prints one self-contained command per run (for a SLURM array or a TPU queue). At
the end, `experiments.report` writes DIR/results.{csv,md} and the figures.
"""

import sys

from absl import flags
from ml_collections import config_flags

from experiments import cli
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.tools import reporting, sweeps

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Base config file of every run.')
_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file, path/to/sweep.py[:arg].')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the sweep; a folder per run.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Runs at a time; the CPUs are split among them.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the command of each run; run nothing.')
flags.mark_flags_as_required(['config', 'sweep', 'workdir'])


def main(argv):
  del argv
  if _PARALLEL.value < 1:
    raise ConfigError(f'--parallel={_PARALLEL.value} is not allowed; it must be at least 1')
  runs = sweeps.expand(config_flags.get_config_filename(flags.FLAGS['config']),
                       sweeps.load_sweep(_SWEEP.value), cli.config_overrides(sys.argv),
                       _WORKDIR.value)
  if _DRY_RUN.value:
    for run in runs:
      print(sweeps.shell_command(run))
    return
  sweeps.write_manifest(_WORKDIR.value, runs)
  print(f'{len(runs)} runs in {_WORKDIR.value}', flush=True)
  outcome = sweeps.run_all(runs, _PARALLEL.value, report=lambda line: print(line, flush=True))
  paths = reporting.write_report(_WORKDIR.value)
  print('report: ' + ', '.join(paths))
  failed = [name for name, state in outcome.items() if state == 'failed']
  if failed:
    cli.fail(f'{len(failed)} of {len(runs)} runs failed: {", ".join(failed)}')


if __name__ == '__main__':
  cli.run(main)
