"""Images per second of our tf.data preprocessing and of torchvision's, on the same JPEG files
with the same cores.

Each measurement runs in a process of its own, pinned to N cores (`os.sched_setaffinity`):
ours with tf.data's threadpool and TensorFlow's inter- and intra-op threads at N; torchvision's
`ImageFolder` + `DataLoader` with N worker processes (PIL decodes), each at one torch thread, as
users run it. Both read the files once in a shuffled order, after a warm-up of two batches (the
workers starting, tf.data's threads spinning up), and hand over normalized float32 batches.

Run as `python -m mobilenet_jax.tools.input_benchmarking '<json>'`, a process measures one cell
and prints it as a JSON line; `benchmark` starts those processes and takes the medians.
"""

import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PIPELINES = ('ours', 'torchvision')
SPLITS = ('train', 'eval')
WARMUP_BATCHES = 2
MEAN = (0.485, 0.456, 0.406)   # the configs' default, in [0, 1]
STD = (0.229, 0.224, 0.225)


def _files(folder: str) -> tuple[list[str], list[int]]:
  """ImageFolder's listing: class folders in sorted order, their files sorted."""
  classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
  paths, labels = [], []
  for label, name in enumerate(classes):
    for file in sorted(os.listdir(os.path.join(folder, name))):
      paths.append(os.path.join(folder, name, file))
      labels.append(label)
  return paths, labels


def _ours(split: str, folder: str, cores: int, batch: int, size: int, fields: dict):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mobilenet_jax.data import preprocessing  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_inter_op_parallelism_threads(cores)
  tf.config.threading.set_intra_op_parallelism_threads(cores)
  paths, labels = _files(folder)
  ds = tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths), seed=0)
  mean = [m * 255 for m in MEAN]
  std = [s * 255 for s in STD]
  if split == 'train':
    def prepare(index, example):
      path, label = example
      seed = tf.stack([tf.constant(0, tf.int64), index])
      image = preprocessing.train_image(
          tf.io.read_file(path), seed, size=size, style='imagenet', padding=0, flip=True,
          interpolation=fields['train_interpolation'])
      return image, label
    ds = ds.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
    ds = ds.map(lambda images, labels: (preprocessing.normalize(images, mean, std), labels))
  else:
    def prepare(path, label):
      image = preprocessing.eval_image(tf.io.read_file(path), size=size, style='imagenet',
                                       crop_fraction=fields['crop_fraction'],
                                       interpolation=fields['interpolation'],
                                       eval_decode=fields['eval_decode'])
      return preprocessing.normalize(image, mean, std), label
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
  options = tf.data.Options()
  options.threading.private_threadpool_size = cores
  options.threading.max_intra_op_parallelism = 1
  return ds.prefetch(2).with_options(options).as_numpy_iterator


def _torchvision(split: str, folder: str, cores: int, batch: int, size: int):
  import torch  # pylint: disable=g-import-not-at-top
  from mobilenet_jax.interop import torch_reference  # pylint: disable=g-import-not-at-top
  torch_reference.import_torchvision_models()
  from torchvision import datasets, transforms  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)
  if split == 'train':
    crop = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
  else:
    crop = [transforms.Resize(round(size / 0.875)), transforms.CenterCrop(size)]
  transform = transforms.Compose([*crop, transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
  return torch.utils.data.DataLoader(
      datasets.ImageFolder(folder, transform), batch_size=batch, shuffle=True,
      generator=torch.Generator().manual_seed(0), num_workers=cores,
      worker_init_fn=lambda _: torch.set_num_threads(1)).__iter__


def _cpu_seconds() -> float:
  """CPU time of this process's threads and of its children that have exited (the
  DataLoader's workers, once the iterator is exhausted)."""
  return sum(getattr(resource.getrusage(who), field)
             for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
             for field in ('ru_utime', 'ru_stime'))


def measure(pipeline: str, split: str, folder: str, cores: int, batch: int, size: int = 224,
            fields: dict | None = None) -> dict:
  """One cell, in this process: pins it to `cores` cores and reads the folder once.

  Images/s is timed after the warm-up. Images per CPU-second, over the whole pass from the
  iterator's start (the workers' start-up included), stays put when other processes load the
  machine, which wall time does not: a check on figures measured on a busy machine.
  """
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
  if pipeline == 'ours':
    start_iterator = _ours(split, folder, cores, batch, size, fields or {})
  else:
    start_iterator = _torchvision(split, folder, cores, batch, size)
  cpu_start = _cpu_seconds()
  batches = start_iterator()
  warm_up = sum(len(next(batches)[0]) for _ in range(WARMUP_BATCHES))
  images, start = 0, time.perf_counter()
  for images_batch, _ in batches:
    images += len(images_batch)
  seconds = time.perf_counter() - start
  del batches  # joins the workers, whose CPU time then counts
  cpu = _cpu_seconds() - cpu_start
  return {'pipeline': pipeline, 'split': split, 'cores': cores, 'images': images,
          'seconds': seconds, 'images_per_second': images / seconds,
          'images_per_cpu_second': (warm_up + images) / cpu}


def _stages(size: int) -> dict:
  """What each part of our preprocessing costs: image bytes -> output, one stage each."""
  # pylint: disable=protected-access  (the resize of the code before the JPEG windows)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mobilenet_jax.data import preprocessing  # pylint: disable=g-import-not-at-top
  p = preprocessing

  def window(image_bytes, seed):
    return p.decode_window(image_bytes, lambda h, w: p.inception_window(h, w, seed))

  def whole_then_slice(image_bytes, seed, interpolation):  # before the JPEG windows
    image = p.decode(image_bytes)
    top, left, h, w = p.inception_window(tf.shape(image)[0], tf.shape(image)[1], seed)
    return p._resize(image[top:top + h, left:left + w], (size, size), interpolation)

  stages = {'decode whole image': lambda b, s: p.decode(b),
            'decode train window': window,
            'train: whole image, bicubic (before)': lambda b, s: whole_then_slice(b, s, 'bicubic')}
  for interpolation in p.INTERPOLATIONS:
    stages[f'train: window, {interpolation}'] = functools.partial(
        lambda b, s, i: p.inception_crop(b, size, s, i), i=interpolation)
  for decode in p.EVAL_DECODES:
    for interpolation in p.INTERPOLATIONS:
      stages[f'eval: {decode}, {interpolation}'] = functools.partial(
          lambda b, s, d, i: p.eval_image(b, size=size, style='imagenet', interpolation=i,
                                          eval_decode=d), d=decode, i=interpolation)
  return stages


def profile(folder: str, size: int = 224, **_) -> dict:
  """Images per CPU-second of each stage, on one core and one thread, from bytes in memory
  (no file reads, no batching): where our pipeline's time goes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)
  contents = []
  for path in _files(folder)[0]:
    with open(path, 'rb') as f:
      contents.append(f.read())
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  rates = {}
  for name, stage in _stages(size).items():
    ds = tf.data.Dataset.from_tensor_slices(contents).enumerate().map(
        lambda i, b, stage=stage: tf.cast(
            stage(b, tf.stack([tf.constant(0, tf.int64), i]))[0, 0, 0], tf.float32))
    ds = ds.with_options(options)
    for _ in ds.take(4):  # traced and warm
      pass
    start = time.process_time()
    for _ in ds:
      pass
    rates[name] = len(contents) / (time.process_time() - start)
  return rates


def _measure_in_process(**kwargs) -> dict:
  command = [sys.executable, '-m', 'mobilenet_jax.tools.input_benchmarking', json.dumps(kwargs)]
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      p for p in (root, os.environ.get('PYTHONPATH')) if p)}
  done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
  if done.returncode:
    raise RuntimeError(f'{kwargs["pipeline"]} {kwargs["split"]} at {kwargs["cores"]} cores '
                       f'failed:\n{done.stderr[-3000:]}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'unknown CPU'


def benchmark(folder: str, *, core_counts: list[int], repeats: int, batch: int, size: int,
              fields: dict, pipelines=PIPELINES, splits=SPLITS) -> dict:
  """Every (split, cores, pipeline) cell's median images/s over `repeats` processes; the rounds
  alternate the pipelines, so that both see the same machine load."""
  runs = {}
  for _ in range(repeats):
    for split in splits:
      for cores in core_counts:
        for pipeline in pipelines:
          result = _measure_in_process(pipeline=pipeline, split=split, folder=folder,
                                       cores=cores, batch=batch, size=size, fields=fields)
          runs.setdefault((split, cores, pipeline), []).append(result)
  cells = []
  for (split, cores, pipeline), results in runs.items():
    rate = statistics.median(r['images_per_second'] for r in results)
    cells.append({'split': split, 'cores': cores, 'pipeline': pipeline,
                  'images_per_second': rate, 'images_per_second_per_core': rate / cores,
                  'images_per_cpu_second': statistics.median(
                      r['images_per_cpu_second'] for r in results),
                  'runs': [r['images_per_second'] for r in results]})
  return {'cpu': cpu_name(), 'cores_available': len(os.sched_getaffinity(0)),
          'batch': batch, 'image_size': size, 'repeats': repeats, 'fields': fields,
          'cells': cells, 'ratios': ratios(cells)}


def ratios(cells: list[dict]) -> list[dict]:
  """Ours over torchvision's images/s, per split and core count (above 1: ours is faster)."""
  by_key = {(c['split'], c['cores'], c['pipeline']): c['images_per_second'] for c in cells}
  return [{'split': split, 'cores': cores, 'ours_over_torchvision': value / by_key[
              (split, cores, 'torchvision')]}
          for (split, cores, pipeline), value in by_key.items()
          if pipeline == 'ours' and (split, cores, 'torchvision') in by_key]


def cores_to_feed(cells: list[dict], rate: float) -> dict[str, float]:
  """The cores each pipeline's train preprocessing needs for `rate` images/s, from its
  per-core figure at the most cores measured (where scaling losses show)."""
  train = [c for c in cells if c['split'] == 'train']
  most = max(c['cores'] for c in train)
  return {c['pipeline']: rate / c['images_per_second_per_core']
          for c in train if c['cores'] == most}


def profile_in_process(folder: str, size: int) -> dict:
  return _measure_in_process(pipeline='stages', folder=folder, size=size, split='', cores=1)


if __name__ == '__main__':
  _ARGS = json.loads(sys.argv[1])
  print(json.dumps((profile if _ARGS['pipeline'] == 'stages' else measure)(**_ARGS)), flush=True)
