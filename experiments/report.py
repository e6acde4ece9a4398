r"""Writes a sweep's report: `python -m experiments.report DIR`.

DIR/results.csv and DIR/results.md (run, family, overrides, params, MAdds, top-1, EMA top-1,
img/s, train time, status), DIR/pareto.png (top-1 against MAdds and params, a curve per family)
and DIR/curves.png (eval top-1 and train loss of every run). Works while the sweep is running.
"""

import os
import sys

from absl import app

from mobilenet_jax import reporting


def main(argv):
  if len(argv) != 2 or not os.path.isdir(argv[1]):
    sys.exit('usage: python -m experiments.report DIR  (DIR: a sweep workdir)')
  for path in reporting.write_report(argv[1]):
    print(path)


if __name__ == '__main__':
  app.run(main)
