"""The training loop end to end on mock data: outputs, resume, devices, NaN, bad configs."""

import json
import os
import re
import time

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from mobilenet_jax import train
from mobilenet_jax.ops import conv, depthwise, implementations
from mobilenet_jax.train import checkpointing, parallel, setup
from mobilenet_jax.errors import ConfigError
from tests.train_fixtures import (RANDOM_STEP, V5_TINY, mock_data, restored_checkpoint,
                                  tiny_config, train_whole_and_crashed_then_resumed)


@pytest.mark.parametrize('dataset', ['cifar10', 'imagenet2012'])
def test_a_few_steps_end_to_end(dataset, tmp_path):
  with mock_data():
    flip = dataset == 'cifar10'  # the mirror-image views are evaluated and recorded, or not
    results = train.train_and_evaluate(tiny_config(dataset, eval_flip=flip), str(tmp_path),
                                       ('--config.x=1',))
    step, metrics = train.evaluate_latest(str(tmp_path), tiny_config(dataset, eval_flip=flip))
  assert step == 4 and metrics['raw/top1'] == results['top1']
  assert metrics['ema/top5'] == results['ema_top5']
  assert ('flip_top1' in results and 'ema_flip_top5' in results) == flip
  if flip:
    assert metrics['raw_flip/top1'] == results['flip_top1']
    assert metrics['ema_flip/top5'] == results['ema_flip_top5']
  assert results['steps'] == 4 and results['overrides'] == ['--config.x=1']
  assert results['dead_channels'] == metrics['raw/dead_channels'] == 0  # 4 steps kill none
  assert 0 <= results['top1'] <= results['top5'] <= 1 and 0 <= results['ema_top1'] <= 1
  assert results['params'] > 0 and results['madds'] > 0 and results['images_per_second'] > 0
  assert json.loads((tmp_path / 'results.json').read_text()) == results
  records = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records if 'train_loss' in r] == [1, 2, 3, 4]
  assert all(np.isfinite(r['train_loss']) for r in records if 'train_loss' in r)
  # The gradient's global norm, the interval's mean and its largest (one step an interval here).
  assert all(r['train_grad_norm_max'] == r['train_grad_norm'] > 0
             for r in records if 'train_loss' in r)
  assert any('eval_ema/top1' in r for r in records)
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '2.integrity.json', '4',
                                                         '4.integrity.json']
  assert json.loads((tmp_path / 'config.json').read_text())['dataset'] == dataset


@pytest.mark.slow  # resume equivalence also in test_preemption.py, truncation in test_workdir.py
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, monkeypatch):
  config = tiny_config(num_train_steps=6)
  with mock_data():
    results = train_whole_and_crashed_then_resumed(config, tmp_path, monkeypatch)
  whole, resumed = (restored_checkpoint(tmp_path / name) for name in ('whole', 'resumed'))
  whole, whole_step, resumed, resumed_step = (whole['params'], whole['step'], resumed['params'],
                                              resumed['step'])
  assert whole_step == resumed_step == 6 and results['steps'] == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), whole, resumed)
  steps = [json.loads(l)['step'] for l in (tmp_path / 'resumed' / 'metrics.jsonl').open()
           if 'train_loss' in l]
  assert steps == [1, 2, 3, 4, 5, 6]  # what the crashed run logged after step 2 is replaced


def test_a_finished_run_given_again_does_not_train_again_unless_given_more_steps(tmp_path,
                                                                                 capsys):
  config = tiny_config()
  with mock_data():
    first = train.train_and_evaluate(config, str(tmp_path))
    again = train.train_and_evaluate(config, str(tmp_path))
    assert again['steps'] == 4 and again['top1'] == first['top1']
    longer = train.train_and_evaluate(tiny_config(num_train_steps=6, learning_rate=0.05),
                                      str(tmp_path))
  assert longer['steps'] == 6
  assert 'changed since: learning_rate, num_train_steps' in capsys.readouterr().out
  saved = json.loads((tmp_path / 'config.json').read_text())  # what the run now uses
  assert saved['num_train_steps'] == 6 and saved['learning_rate'] == 0.05


def test_auto_says_its_choices_in_a_line_a_step_and_each_in_the_workdir(tmp_path, monkeypatch,
                                                                         capsys):
  """'auto' measuring, faked so that the table's choices win (the programs are then the other
  tests', served by the compilation cache): one line before the first step for the train step's
  layer shapes, one at the first evaluation for the forward pass's, each choice in the workdir's
  file; another process reads the cache."""
  monkeypatch.setenv('MOBILENET_JAX_AUTOTUNE', 'on')
  monkeypatch.setenv('MOBILENET_JAX_CACHE_DIR', str(tmp_path / 'cache'))
  monkeypatch.setattr(implementations, '_decided', {})
  table = {depthwise.FASTEST_ON_BACKEND['cpu'], conv.FASTEST_ON_BACKEND['cpu']}
  monkeypatch.setattr(implementations, '_measure_all', lambda candidates, *_: {
      name: 1e-3 if name in table else 2e-3 for name in candidates})
  consoles = []
  with mock_data():
    for run in ('first', 'second'):
      train.train_and_evaluate(tiny_config(), str(tmp_path / run))
      consoles.append(capsys.readouterr().out.splitlines())
      monkeypatch.setattr(implementations, '_decided', {})  # a new process
  first, second = consoles
  assert not [line for line in first + second if '=auto for' in line]
  train_line, eval_line = [line for line in first if line.startswith('auto:')]
  detail = (tmp_path / 'first' / 'implementations.txt').read_text().splitlines()
  shapes = int(re.fullmatch(r'auto: (\d+) layer shapes measured in \d+ s, cached in .*; each '
                            r'choice in .*first/implementations.txt', train_line).group(1))
  assert first.index(train_line) < first.index(next(l for l in first if l.startswith('step 1/')))
  assert re.fullmatch(rf'auto: {len(detail) - shapes} layer shapes \(forward pass only\) '
                      r'measured in \d+ s, .*', eval_line)
  assert len(detail) > shapes > 0 and all('=auto for' in line for line in detail)
  assert all(line.endswith('forward pass only)') for line in detail[shapes:])
  assert all(re.search(r': (\w+) \(measured: \1 1.00 ms', line) for line in detail)  # the winner
  assert [line.split(' read from')[0] for line in second if line.startswith('auto:')] == [
      f'auto: {shapes} layer shapes', f'auto: {len(detail) - shapes} layer shapes (forward pass '
      'only)']


def test_eight_devices_and_one_give_the_same_training(tmp_path):
  """With every random draw of the step on: the draws are functions of (seed, step) and of the
  row of the global batch, whatever the devices hold of it."""
  assert jax.device_count() == 8
  config = tiny_config(batch_size=16, **RANDOM_STEP)
  model = setup.build_model(config)
  rng = np.random.default_rng(0)
  batches = [{'image': rng.normal(size=(16, 16, 16, 3)).astype(np.float32),
              'label': rng.integers(0, 10, 16)} for _ in range(3)]
  outcomes = []
  for devices in (jax.devices()[:1], jax.devices()):
    compiled = parallel.compile_steps(model, config, steps_per_epoch=10, num_steps=3,
                                      devices=devices)
    state = compiled.init()
    losses = []
    for batch in batches:
      state, metrics = compiled.train_step(state, compiled.to_devices(batch))
      losses.append(float(metrics['loss']))
    outcomes.append((losses, jax.device_get(state.params), jax.device_get(state.batch_stats)))
  (losses_1, params_1, stats_1), (losses_8, params_8, stats_8) = outcomes
  np.testing.assert_allclose(losses_1, losses_8, atol=1e-5)
  for one, eight in ((params_1, params_8), (stats_1, stats_8)):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), one, eight)


def test_the_ema_weights_are_evaluated_with_batch_norm_statistics_averaged_alike():
  config = tiny_config(batch_size=16, **{'model.dropout_rate': 0.0})  # ema_decay 0.9
  compiled = parallel.compile_steps(setup.build_model(config), config, steps_per_epoch=10,
                                    num_steps=3)
  rng = np.random.default_rng(1)
  batches = [{'image': rng.normal(size=(16, 16, 16, 3)).astype(np.float32),
              'label': rng.integers(0, 10, 16)} for _ in range(3)]
  state = compiled.init()
  expected = jax.device_get(state.ema_batch_stats)
  for step, batch in enumerate(batches):
    state, _ = compiled.train_step(state, compiled.to_devices(batch))
    decay = min(config.ema_decay, (1 + step) / (10 + step))
    expected = jax.tree.map(lambda e, s, d=decay: d * e + (1 - d) * s, expected,
                            jax.device_get(state.batch_stats))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(state.ema_batch_stats), expected)
  assert not np.allclose(jax.tree.leaves(state.ema_batch_stats)[0],
                         jax.tree.leaves(state.batch_stats)[0])
  batch = compiled.to_devices({**batches[0], 'mask': np.ones(16, np.float32)})
  as_raw = state.replace(params=state.ema_params, batch_stats=state.ema_batch_stats)
  assert float(compiled.eval_step(state, batch)['ema/loss']) == pytest.approx(
      float(compiled.eval_step(as_raw, batch)['raw/loss']), rel=1e-6)


def test_the_flip_views_average_the_logits_of_each_image_and_its_mirror_image():
  config = tiny_config(batch_size=16, eval_flip=True, **{'model.dropout_rate': 0.0})
  compiled = parallel.compile_steps(setup.build_model(config), config, steps_per_epoch=10,
                                    num_steps=3)
  rng = np.random.default_rng(2)
  images = rng.normal(size=(16, 16, 16, 3)).astype(np.float32)
  labels = rng.integers(0, 10, 16)
  state, _ = compiled.train_step(compiled.init(),
                                 compiled.to_devices({'image': images, 'label': labels}))
  mask = np.arange(16) < 12  # the padding examples count for nothing in either view

  def evaluate(batch_images):
    batch = {'image': batch_images, 'label': labels, 'mask': mask}
    sums = jax.device_get(compiled.eval_step(state, compiled.to_devices(batch)))
    return {k: float(v) for k, v in sums.items()}

  sums = evaluate(images)
  for name in ('raw', 'ema'):
    variables = state.variables(name)
    logits = [np.asarray(state.apply_fn(variables, x, train=False))
              for x in (images, images[:, :, ::-1])]
    assert not np.allclose(logits[0], logits[1], rtol=0, atol=1e-6)  # the mirror: another view
    averaged = (logits[0] + logits[1]) / 2
    losses = optax.softmax_cross_entropy_with_integer_labels(averaged, labels)
    assert sums[f'{name}_flip/loss'] == pytest.approx(float((losses * mask).sum()), rel=1e-5)
    assert sums[f'{name}_flip/top1'] == ((averaged.argmax(-1) == labels) & mask).sum()
  mirrored = evaluate(images[:, :, ::-1].copy())
  for key in ('raw_flip/loss', 'ema_flip/loss', 'raw_flip/top1'):  # both views: symmetric
    assert mirrored[key] == pytest.approx(sums[key], rel=1e-5)


def test_dead_batch_norm_channels_are_counted_for_each_set_of_weights():
  config = tiny_config(batch_size=16)
  compiled = parallel.compile_steps(setup.build_model(config), config, steps_per_epoch=10,
                                    num_steps=3)
  state = compiled.init()
  assert jax.device_get(compiled.dead_channels(state)) == {'raw/dead_channels': 0,
                                                           'ema/dead_channels': 0}
  # In the raw statistics: three channels of the first batch norm that never fire and one whose
  # running variance has decayed to 1e-12 (dead), and one of the last at 1e-6 (small but
  # alive); the EMA's own statistics keep them all alive.
  flat, tree = jax.tree_util.tree_flatten_with_path(jax.device_get(state.batch_stats))
  leaves = [np.array(leaf) for _, leaf in flat]
  variances = [i for i, (path, _) in enumerate(flat) if path[-1].key == 'var']
  first, last = variances[0], variances[-1]
  leaves[first][:3] = 0.0
  leaves[first][3] = 1e-12
  leaves[last][0] = 1e-6
  state = state.replace(batch_stats=jax.device_put(jax.tree.unflatten(tree, leaves),
                                                   compiled.replicated))
  batch = {'image': np.zeros((16, 16, 16, 3), np.float32), 'label': np.zeros(16, np.int32),
           'mask': np.ones(16, np.float32)}
  metrics = compiled.evaluate(state, [batch])
  assert metrics['raw/dead_channels'] == 4 and metrics['ema/dead_channels'] == 0
  assert 0 <= metrics['raw/top1'] <= 1


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
  config = tiny_config(num_train_steps=6, learning_rate=1e30, log_every_steps=2,
                       checkpoint_every_steps=1)
  with mock_data(), pytest.raises(FloatingPointError, match='the loss is not finite at step'):
    train.train_and_evaluate(config, str(tmp_path))
  manager = checkpointing.create_manager(str(tmp_path), 3)
  kept = manager.latest_step()
  params = manager.restore(kept, args=ocp.args.StandardRestore())['params']
  manager.close()
  assert kept is not None and kept < 6
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize('field, value, message', [
    ('dataset', 'no_such_dataset', "dataset='no_such_dataset' is not a TFDS dataset"),
    ('optimizer', 'lamb', "optimizer='lamb' is not allowed; choose one of: 'rmsprop', 'sgd', "
                          "'adamw'"),
    ('schedule', 'step', "schedule='step' is not allowed; choose one of: 'cosine', "
                         "'exponential', 'constant'"),
    ('batch_size', 12, 'batch_size=12 is not allowed; it must be divisible by the 8 devices'),
    ('learning_rate', -0.1, 'learning_rate=-0.1 is not allowed; it must be a number >= 0'),
    ('input.preprocessing', 'autoaugment', "input.preprocessing='autoaugment' is not allowed"),
    ('model.width_multiplier', 0.0, 'model.width_multiplier=0.0 is not allowed'),
    ('input.image_size', 2, 'input.image_size=2 is not allowed'),
    ('label_smoothing', 1.5, 'label_smoothing=1.5 is not allowed'),
    ('input.image_size', 100000, 'input.image_size=100000 is not allowed; at most 1536'),
    ('input.mean', (120.0, 120.0), 'input.mean=(120.0, 120.0) is not allowed; it must be 3'),
    ('input.std', (0.0, 0.0, 0.0), 'input.std=(0.0, 0.0, 0.0) is not allowed; every value'),
    ('input.crop_padding', -3, 'input.crop_padding=-3 is not allowed'),
    ('input.train_interpolation', 'lanczos', "input.train_interpolation='lanczos' is not "
                                             "allowed; choose one of: 'area', 'bicubic'"),
    ('input.eval_decode', 'crop', "input.eval_decode='crop' is not allowed; choose one of: "
                                  "'window', 'full'"),
    ('input.randaugment_layers', -1, 'input.randaugment_layers=-1 is not allowed; it must be an '
                                     'integer >= 0'),
    ('input.randaugment_magnitude', -2.0, 'input.randaugment_magnitude=-2.0 is not allowed'),
    ('input.randaugment_prob', 1.5, 'input.randaugment_prob=1.5 is not allowed; it must be a '
                                    'probability in [0, 1]'),
    ('input.random_erasing_prob', -0.1, 'input.random_erasing_prob=-0.1 is not allowed'),
    ('input.random_erasing_area', (0.5, 0.2), 'input.random_erasing_area=(0.5, 0.2) is not '
                                              'allowed; it must be (low, high)'),
    ('input.mixup_alpha', -0.2, 'input.mixup_alpha=-0.2 is not allowed; it must be a number >= 0'),
    ('input.cutmix_alpha', -1.0, 'input.cutmix_alpha=-1.0 is not allowed'),
    ('input.mix_prob', 2.0, 'input.mix_prob=2.0 is not allowed; it must be a probability'),
    ('input.mix_switch_prob', -0.5, 'input.mix_switch_prob=-0.5 is not allowed'),
    ('input.mix_group_size', 3, 'input.mix_group_size=3 is not allowed; it must be 0 (the whole '
                                'batch) or divide batch_size=8'),
    ('model.bn_group_size', -1, 'model.bn_group_size=-1 is not allowed; it must be an integer'),
    ('preemption_check_every_steps', 0, 'preemption_check_every_steps=0 is not allowed'),
    ('body_learning_rate_scale', 2.0, 'body_learning_rate_scale=2.0 is not allowed; it must be a '
                                      'number in [0, 1]'),
    ('init_from', f'torchvision:{__file__}', f"init_from='torchvision:{__file__}' is not "
                                             f'allowed; {__file__} cannot be read as torchvision'),
])
def test_bad_config_fails_fast_with_one_line_and_writes_nothing(field, value, message, tmp_path):
  start = time.perf_counter()
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(tiny_config(**{field: value}), str(tmp_path / 'run'))
  assert message in str(error.value) and '\n' not in str(error.value)
  assert time.perf_counter() - start < (10 if field == 'init_from' else 3)  # torch's import
  assert not (tmp_path / 'run').exists()


def test_resuming_with_another_architecture_is_refused_and_overwrites_nothing(tmp_path):
  with mock_data():
    train.train_and_evaluate(tiny_config(), str(tmp_path))
  before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}
  with pytest.raises(ConfigError, match=r'holds a run of another architecture \(changed: '
                                        r'model.width_multiplier\)'):
    train.train_and_evaluate(tiny_config(**{'model.width_multiplier': 2.0}), str(tmp_path))
  assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')} == before


# Slow: another network's train and eval programs. V5's layers equal timm's in the default run
# (interop/test_timm_v5.py), and the loop and checkpoints are the tiny network's tests above.
@pytest.mark.slow
def test_a_v5_like_model_without_batch_statistics_trains_and_checkpoints(tmp_path):
  """RMSNorm leaves the model without batch statistics, which the train state, the EMA,
  checkpoints and evaluation all do without."""
  with mock_data():
    results = train.train_and_evaluate(tiny_config(**V5_TINY), str(tmp_path), ())
  assert results['steps'] == 4 and np.isfinite(results['top1'])
  assert results['dead_channels'] == 0  # no batch norm, nothing to count
  state = restored_checkpoint(str(tmp_path), 4)
  assert 'msfa' in state['params'] and not state['batch_stats']
