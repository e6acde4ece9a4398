r"""Writes a sweep's report: `python -m experiments.report --workdir=DIR`.

DIR/results.csv and DIR/results.md (run, family, overrides, params, MAdds, top-1, EMA top-1,
img/s, train time, status), DIR/pareto.png (top-1 against MAdds and params, a curve per family),
DIR/time.png (top-1 against training time: what each minute buys)
and DIR/curves.png (eval top-1 and train loss of every run). Works while the sweep is running.
"""

import os

from absl import flags

from experiments import cli
from mobilenet_jax.errors import MissingRun
from mobilenet_jax.tools import reporting

_WORKDIR = flags.DEFINE_string('workdir', None, 'The sweep\'s workdir.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  if not os.path.isdir(_WORKDIR.value):
    raise MissingRun(f'--workdir={_WORKDIR.value} is not a folder; give a sweep\'s workdir')
  for path in reporting.write_report(_WORKDIR.value):
    print(path)


if __name__ == '__main__':
  cli.run(main)
