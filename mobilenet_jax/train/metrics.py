"""Where metrics go: TensorBoard and the log through clu, and `metrics.jsonl` for scripts."""

import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from clu import metric_writers

from mobilenet_jax.train import workdir as run_dir


class JsonLinesWriter(metric_writers.interface.MetricWriter):
  """Appends one JSON object per `write_scalars` call: {"step": ..., name: value, ...}."""

  def __init__(self, path: str):
    self._file = run_dir.gfile().GFile(path, 'a')  # a local folder, gs://, ram://...

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    record = {'step': int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}}
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()  # readable while the run goes on (the sweep report reads it)

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def create_writer(workdir: str, start_step: int) -> metric_writers.MetricWriter:
  """TensorBoard summaries, log lines and metrics.jsonl on the first host; logs elsewhere.

  Records of steps after `start_step` (logged before an interruption) are dropped first: the
  resumed run logs those steps again.
  """
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True)
  run_dir.truncate_metrics(workdir, start_step)
  # clu's create_default_writer, less its epath.Path(workdir), which knows gs:// but not every
  # store TensorBoard's writer does (ram://).
  return metric_writers.MultiWriter([
      metric_writers.LoggingWriter(), metric_writers.SummaryWriter(workdir),
      JsonLinesWriter(run_dir.join(workdir, run_dir.METRICS_FILE))])
