"""A stand-in for `experiments.train` in sweep tests: writes what a run writes, in milliseconds.

Its figures are functions of the width multiplier. `--config.learning_rate=-1` fails as a bad
config does; `--config.seed=13` is killed (SIGKILL) after its first checkpoint, then resumes;
`--config.seed=21` writes its PID to `pid` and waits (to be killed with its sweep);
`--config.seed=22` crashes with a traceback whose last line says nothing.
"""

import json
import os
import signal
import sys
import time

from configs import v3_small
from mobilenet_jax.tools import lifetime


def main(argv):
  lifetime.die_with_parent()
  args = dict(arg[2:].split('=', 1) for arg in argv[1:])
  workdir, config_arg = args['workdir'], args['config']
  overrides = {k.removeprefix('config.'): v for k, v in args.items() if k.startswith('config.')}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'invocations.txt'), 'a') as f:
    f.write(' '.join(argv[1:]) + '\n')
  if overrides.get('learning_rate') == '-1':
    sys.exit('error: learning_rate=-1.0 is not allowed; it must be >= 0')
  if overrides.get('seed') == '21':
    with open(os.path.join(workdir, 'pid'), 'w') as f:
      f.write(str(os.getpid()))
    time.sleep(120)
  if overrides.get('seed') == '22':
    raise RuntimeError('the step failed:\n  {"config": {})>.')
  width = float(overrides.get('model.width_multiplier', 1.0))
  config = v3_small.get_config('fashion_mnist')
  config.model.width_multiplier = width
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort())
  checkpoint = os.path.join(workdir, 'checkpoint')
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    if not os.path.exists(checkpoint):
      f.write(json.dumps({'step': 1, 'train_loss': 2.0, 'train_images_per_second': 100.0}) + '\n')
      f.write(json.dumps({'step': 2, 'eval_raw/top1': 0.5, 'eval_ema/top1': 0.4}) + '\n')
      open(checkpoint, 'w').close()
      if overrides.get('seed') == '13':
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    f.write(json.dumps({'step': 3, 'train_loss': 1.0 / width}) + '\n')
    f.write(json.dumps({'step': 4, 'eval_raw/top1': 0.8 + 0.1 * width,
                        'eval_ema/top1': 0.79 + 0.1 * width}) + '\n')
  family = os.path.splitext(os.path.basename(config_arg.split(':')[0]))[0]
  results = {'config': f'{family}:fashion_mnist', 'params': int(1e6 * width),
             'madds': int(5e6 * width**2), 'top1': 0.8 + 0.1 * width,
             'ema_top1': 0.79 + 0.1 * width, 'images_per_second': 1000.0 / width,
             'train_seconds': 60.0 * width, 'steps': 4}
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f)


if __name__ == '__main__':
  main(sys.argv)
