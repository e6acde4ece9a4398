"""Knowledge distillation: the loss, the teachers inside the step, their records in the run
directory, resume and devices, and the inputs refused with one line."""

import json
import os
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mobilenet_jax import train
from mobilenet_jax.errors import ConfigError
from mobilenet_jax.train import checkpointing, distill, parallel, setup, teachers
from mobilenet_jax.train import workdir as run_dir
from tests.train_fixtures import (mock_data, restored_checkpoint, tiny_config,
                                  train_whole_and_crashed_then_resumed)

# The teachers: the tiny network at 24 px with a wider head (another input size and shape than
# the 16 px student's, so the step resizes) and at the student's own size; random weights saved
# as a run of ours.
TEACHER_FIELDS = {'input.image_size': 24, 'model.head_width': 24,
                  'input.mean': (100.0, 110.0, 120.0), 'input.std': (50.0, 60.0, 70.0)}


def _save_teacher_run(workdir, config, seed: int = 0, step: int = 0, scale: float = 1.0) -> None:
  """A run directory holding `config` and a checkpoint of its weights (random, of `seed`; the
  raw and the EMA weights both times `scale`)."""
  config.seed = seed
  compiled = parallel.compile_steps(setup.build_model(config), config, 10, 4,
                                    devices=jax.devices()[:1])
  state = compiled.init()
  state = state.replace(params=jax.tree.map(lambda p: p * scale, state.params),
                        ema_params=jax.tree.map(lambda p: p * scale, state.ema_params))
  manager = checkpointing.create_manager(str(workdir), 3, asynchronous=False)
  checkpointing.save(manager, step, state)
  checkpointing.finish(manager)
  manager.close()
  run_dir.save_config(str(workdir), config)


@pytest.fixture(scope='module')
def teacher_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('teachers')
  _save_teacher_run(root / 'wide', tiny_config(**TEACHER_FIELDS))
  _save_teacher_run(root / 'same', tiny_config(), seed=3)
  return str(root / 'wide'), str(root / 'same')


def _batches(count: int, size: int = 16, batch: int = 16, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [{'image': rng.normal(size=(batch, size, size, 3)).astype(np.float32),
           'label': rng.integers(0, 10, batch)} for _ in range(count)]


def test_the_loss_blends_the_cross_entropy_and_the_softened_kl_scaled_by_t_squared():
  rng = np.random.default_rng(0)
  logits, teacher = rng.normal(size=(2, 6, 10)).astype(np.float32) * 3

  def loss(alpha, t, student=logits):
    d = distill.Distillation((), (), (), (), alpha, t)
    return float(d.loss(jnp.float32(1.7), jnp.asarray(student), jnp.asarray(teacher)))

  def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  for alpha, t in ((0.5, 1.0), (0.9, 4.0), (1.0, 2.0)):
    p, q = softmax(teacher / t), softmax(logits / t)
    kl = np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
    assert loss(alpha, t) == pytest.approx((1 - alpha) * 1.7 + alpha * t * t * kl, rel=1e-5)
  assert loss(0.0, 3.0) == pytest.approx(1.7, rel=1e-7)  # alpha 0: the labels alone
  assert loss(0.5, 2.0, student=teacher) == pytest.approx(0.85, abs=1e-6)  # a perfect match


def test_teachers_are_split_at_commas_but_a_configs_variants_stay_together():
  assert teachers.entries('runs/a, runs/b') == ['runs/a', 'runs/b']
  assert teachers.entries('configs/v3_large.py:minimalistic,small_image@timm:w.pth,runs/a') == [
      'configs/v3_large.py:minimalistic,small_image@timm:w.pth', 'runs/a']
  with pytest.raises(ConfigError, match="distill.teachers='runs/a,,runs/b' is not allowed; an "
                                        'entry is empty'):
    teachers.entries('runs/a,,runs/b')


def test_the_teachers_see_the_students_batch_resized_and_normalized_as_they_were_trained():
  student = tiny_config()
  teacher_config = tiny_config(**TEACHER_FIELDS)
  model = setup.build_model(teacher_config)
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 24, 24, 3))))()
  fake = types.SimpleNamespace(config=teacher_config, model=model)
  d = distill.Distillation.create(student, (fake, fake))
  pixels = np.random.default_rng(1).uniform(0, 255, size=(4, 16, 16, 3)).astype(np.float32)
  images = (pixels - np.asarray(student.input.mean)) / np.asarray(student.input.std)
  got = jax.jit(d.teacher_logits)((variables, variables), jnp.asarray(images, jnp.float32))
  # What the teacher was trained to see: the same pixels, its own normalization, its size.
  theirs = (pixels - np.asarray(TEACHER_FIELDS['input.mean'])) / np.asarray(
      TEACHER_FIELDS['input.std'])
  theirs = jax.image.resize(jnp.asarray(theirs, jnp.float32), (4, 24, 24, 3), 'bilinear')
  expected = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, theirs)
  assert got.shape == (4, 10) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)  # two alike: their mean


def test_without_teachers_the_step_is_the_same_program_whatever_alpha_and_temperature():
  lowered = []
  for alpha, temperature in ((0.5, 1.0), (0.9, 4.0)):
    config = tiny_config(batch_size=16, **{'distill.alpha': alpha,
                                           'distill.temperature': temperature})
    compiled = parallel.compile_steps(setup.build_model(config), config, 10, 3)
    state = jax.eval_shape(compiled.init)
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _batches(1)[0])
    assert compiled.teachers == ()
    lowered.append(compiled.train_step.lower(state, batch).as_text())
  assert lowered[0] == lowered[1]


def test_a_distilled_step_learns_from_the_teachers_and_one_device_equals_eight(teacher_runs):
  config = tiny_config(batch_size=16, **{'model.dropout_rate': 0.0, 'distill.alpha': 0.7,
                                         'distill.temperature': 2.0,
                                         'distill.teachers': ','.join(teacher_runs)})
  frozen = teachers.load_teachers(config)
  assert [t.weights for t in frozen] == ['EMA weights of step 0'] * 2  # ema_decay 0.9
  model = setup.build_model(config)
  batches = _batches(3)
  outcomes = []
  for devices in (jax.devices()[:1], jax.devices()):
    compiled = parallel.compile_steps(model, config, steps_per_epoch=10, num_steps=3,
                                      devices=devices, teachers=frozen)
    state = compiled.init()
    first = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
    losses = []
    for batch in batches:
      state, metrics = compiled.train(state, compiled.to_devices(batch))
      losses.append(float(metrics['loss']))
    outcomes.append((losses, jax.device_get(state.params)))
  (losses_1, params_1), (losses_8, params_8) = outcomes
  np.testing.assert_allclose(losses_1, losses_8, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params_1, params_8)
  # The first step's loss, from the teachers' averaged logits (tested above) and the student's.
  images = batches[0]['image']
  teacher = jax.jit(distill.Distillation.create(config, frozen).teacher_logits)(
      tuple(t.variables for t in frozen), jnp.asarray(images))
  student = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])[0])(
      first, images)
  targets = optax.smooth_labels(jax.nn.one_hot(batches[0]['label'], 10), config.label_smoothing)
  ce = optax.softmax_cross_entropy(student, targets).mean()
  kl = optax.kl_divergence(jax.nn.log_softmax(student / 2.0),
                           jax.nn.softmax(teacher / 2.0)).mean()
  assert losses_1[0] == pytest.approx(float(0.3 * ce + 0.7 * 4.0 * kl), rel=1e-4)


# Slow: two tiny runs with teachers. The distilled step itself (and 1 device against 8) is the
# test above; a resume that changes other fields is refused in test_loop.py.
@pytest.mark.slow
def test_a_distilled_run_records_its_teachers_and_a_resume_with_a_changed_one_is_refused(
    teacher_runs, tmp_path, capsys):
  wide, same = teacher_runs
  config = tiny_config(**{'distill.teachers': f'{wide},{same}'})
  with mock_data():
    train.train_and_evaluate(config, str(tmp_path / 'student'))
  out = capsys.readouterr().out
  assert 'img/s with 2 teachers' in out and f'distilling (alpha 0.5, temperature 1.0) from {wide}' in out
  records = json.loads((tmp_path / 'student' / 'teachers.json').read_text())
  assert [r['teacher'] for r in records] == [wide, same]
  assert [r['checksum'] for r in records] == [t.checksum for t in teachers.load_teachers(config)]
  # Not in the student's checkpoint: its state's fields, nothing of the teachers'.
  saved = restored_checkpoint(tmp_path / 'student')
  assert sorted(saved) == ['batch_stats', 'ema_batch_stats', 'ema_params', 'opt_state',
                           'params', 'step']
  assert 'head_width' not in json.dumps(records)  # the records hold no weights either
  # The teacher trains on (a later checkpoint, other weights): the student is refused.
  changed = tmp_path / 'changed'
  _save_teacher_run(changed, tiny_config(**TEACHER_FIELDS), step=0)
  _save_teacher_run(changed, tiny_config(**TEACHER_FIELDS), step=5, scale=0.5)
  before = {p: p.stat().st_mtime_ns for p in (tmp_path / 'student').rglob('*')}
  longer = tiny_config(num_train_steps=6, **{'distill.teachers': f'{changed},{same}'})
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(longer, str(tmp_path / 'student'))
  message = str(error.value)
  assert '\n' not in message and 'is not allowed for --workdir=' in message
  assert 'EMA weights of step 5' in message and 'with the teachers it learned from' in message
  assert {p: p.stat().st_mtime_ns for p in (tmp_path / 'student').rglob('*')} == before
  # Evaluation needs no teachers: the run evaluates with its teachers gone.
  with mock_data():
    step, _ = train.evaluate_latest(str(tmp_path / 'student'), tiny_config(
        **{'distill.teachers': str(tmp_path / 'gone')}))
  assert step == 4


@pytest.mark.slow  # two tiny runs with teachers; resume equivalence without them: test_loop.py
def test_a_distilled_run_resumed_after_a_crash_matches_an_uninterrupted_one(
    teacher_runs, tmp_path, monkeypatch):
  config = tiny_config(num_train_steps=6, **{'distill.teachers': ','.join(teacher_runs)})
  with mock_data():
    train_whole_and_crashed_then_resumed(config, tmp_path, monkeypatch)
  whole, resumed = (restored_checkpoint(tmp_path / name) for name in ('whole', 'resumed'))
  assert whole['step'] == resumed['step'] == 6
  jax.tree.map(np.testing.assert_array_equal, whole['params'], resumed['params'])
  assert not np.allclose(whole['params']['classifier']['kernel'],
                         restored_checkpoint(tmp_path / 'resumed', 2)['params']['classifier'][
                             'kernel'])


def _config_only_run(workdir, **fields) -> str:
  run_dir.save_config(str(workdir), tiny_config(**fields))
  return str(workdir)


@pytest.mark.parametrize('make, message', [
    (lambda d: str(d / 'nowhere'), "'{d}/nowhere' is not allowed; no run there"),
    (lambda d: _config_only_run(d / 'mnist', dataset='mnist'),
     'it was trained on mnist, the student trains on cifar10: another label space'),
    (lambda d: _config_only_run(d / 'five', **{'model.num_classes': 5}),
     'it has 5 classes, the student model.num_classes=10'),
    (lambda d: _config_only_run(d / 'fresh'), 'the run has no checkpoint yet'),
    (lambda d: 'configs/v3_small.py', "'configs/v3_small.py' is not allowed; no run there"),
    (lambda d: f'configs/v3_small.py:fashion_mnist@timm:{d}/w.safetensors',
     'it was trained on fashion_mnist, the student trains on cifar10'),
    (lambda d: f'configs/none.py@timm:{d}/w.safetensors', "no config file 'configs/none.py'"),
    (lambda d: f'configs/v3_small.py:cifar10@timm:{d}/w.safetensors',
     "config variant 'cifar10' is not allowed for v3_small"),
])
def test_a_teacher_that_does_not_fit_gets_one_line_and_nothing_is_written(make, message,
                                                                           tmp_path):
  entry = make(tmp_path)
  start = time.perf_counter()
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(tiny_config(**{'distill.teachers': entry}), str(tmp_path / 'run'))
  assert message.format(d=tmp_path) in str(error.value) and '\n' not in str(error.value)
  assert time.perf_counter() - start < 3
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('field, value, message', [
    ('distill.alpha', 1.5, 'distill.alpha=1.5 is not allowed; it must be a probability in [0, 1]'),
    ('distill.temperature', 0.0, 'distill.temperature=0.0 is not allowed; it must be a number > 0'),
])
def test_bad_distillation_fields_get_one_line(field, value, message, tmp_path):
  with pytest.raises(ConfigError, match=message.replace('[', r'\[').replace(']', r'\]')):
    train.train_and_evaluate(tiny_config(**{field: value}), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_published_weights_are_a_teacher_with_the_fields_they_imply(tmp_path):
  import safetensors.torch  # pylint: disable=g-import-not-at-top
  from tests.interop.test_timm_import import _timm_model  # pylint: disable=g-import-not-at-top
  reference = _timm_model('v4_conv_small')
  path = str(tmp_path / 'model.safetensors')
  safetensors.torch.save_file(reference.state_dict(), path)
  entry = f'configs/v4_conv_small.py@timm:{path}'
  student = tiny_config('imagenet2012', **{'distill.teachers': entry})
  (teacher,) = teachers.load_teachers(student)
  assert teacher.num_classes == 1000 and teacher.weights == f'timm:{path}'
  assert teacher.config.input.crop_fraction == 0.95  # set from the source, as init_from does
  assert teacher.checksum == teachers.checksum(teacher.variables)
  assert os.listdir(tmp_path) == ['model.safetensors']
