"""TensorBoard summaries and progress reports of the training loop, written without TensorFlow.

clu's metric writers write summaries through TensorFlow, and importing `clu.metric_writers` (which
`clu.periodic_actions` does too) imports it: 7 s of CPU at the start of every training process on a 2-core machine
(12.8 s against 5.2 s for `import fn2en_jax.experiment`, measured 2026-12-02 on an AMD EPYC with AVX2), longer than
a tiny run's training. An event file is a plain format that the `tensorboard` package writes and reads in pure
Python: TFRecord framing of `Event` protos, a scalar being a 0-d float32 tensor (what TF2's `tf.summary.scalar` and
clu write, and what `fn2en_jax.evaluate.training_curves` reads back). So the loop writes them here, with the same
surface as clu's writers (`write_scalars`, `write_hparams`, `flush`, `close`) and the same log lines, and read back
(`read_scalars`) with the pure-Python record reader TensorBoard falls back to without TensorFlow (TensorBoard's own
event loader imports TensorFlow when it is installed: 6 s more for `python -m fn2en_jax.evaluate`).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from absl import logging
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors as record_errors
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as records
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.summary.writer import record_writer
from tensorboard.util import tensor_util

# TensorBoard reads an events file as TF2 summaries when its first event declares this version.
FILE_VERSION = 'brain.Event:2'
# Orders the files one process writes within a second (readers sort the names; the newest value of a step wins),
# zero-padded so that the names sort as the numbers do.
_FILES = itertools.count()


class SummaryWriter:
  """Writes scalars and hyperparameters to a new events file in `logdir` and to the log; with `logdir=None` only to
  the log (the hosts other than process 0 of a multi-host run, so that one host writes each summary)."""

  def __init__(self, logdir: str | None):
    self._records = None
    if logdir is not None:
      os.makedirs(logdir, exist_ok=True)
      # The name TensorFlow gives its files: a resumed run adds a file beside the first, and readers merge them.
      name = f'events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_FILES):06d}.v2'
      self._records = record_writer.RecordWriter(open(os.path.join(logdir, name), 'wb'))
      self._write(event_pb2.Event(wall_time=time.time(), file_version=FILE_VERSION))

  def _write(self, event: event_pb2.Event) -> None:
    if self._records is not None:
      self._records.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = {tag: float(np.asarray(value)) for tag, value in scalars.items()}
    logging.info('[%d] %s', step, ', '.join(f'{tag}={value:.6g}' for tag, value in values.items()))
    now = time.time()
    for tag, value in values.items():
      self._write(event_pb2.Event(wall_time=now, step=int(step), summary=scalar_summary.scalar_pb(tag, value)))
    self.flush()  # at every log step, so that TensorBoard shows a long run's curves as it trains

  def write_hparams(self, hparams: Mapping[str, bool | int | float | str]) -> None:
    logging.info('[hparams] %s', ', '.join(f'{k}={v}' for k, v in sorted(hparams.items())))
    self._write(event_pb2.Event(wall_time=time.time(), summary=hparams_summary.hparams_pb(dict(hparams))))

  def flush(self) -> None:
    if self._records is not None:
      self._records.flush()

  def close(self) -> None:
    if self._records is not None and not self._records.closed:
      self._records.close()


def read_scalars(path: str) -> Iterator[tuple[str, int, float]]:
  """(tag, step, value) of every scalar in the events file `path`, in the order written: TF2 scalars (0-d numeric
  tensors, as written here) and TF1 `simple_value`s. A record cut short at the end (a writer killed mid-write) ends
  the file, as it does for TensorBoard."""
  reader = records.PyRecordReader_New(path.encode(), 0, b'', None)
  while True:
    try:
      reader.GetNext()
    except (record_errors.OutOfRangeError, record_errors.DataLossError):
      return
    event = event_pb2.Event.FromString(reader.record())
    for value in event.summary.value:
      if value.HasField('tensor'):
        array = tensor_util.make_ndarray(value.tensor)
        if array.ndim == 0 and array.dtype.kind in 'fiub':
          yield value.tag, event.step, float(array)
      elif value.HasField('simple_value'):
        yield value.tag, event.step, float(value.simple_value)


def format_seconds(seconds: float) -> str:
  """1 h 02 min, 3 min 04 s, 12 s."""
  seconds = int(round(seconds))
  if seconds >= 3600:
    return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'
  if seconds >= 60:
    return f'{seconds // 60} min {seconds % 60:02d} s'
  return f'{seconds} s'


class Progress:
  """Called after every step: every `every_secs` seconds, logs the step, the rate since the last report and the time
  left at that rate (`<name>: step 120 of 400 (30%), 8.2 steps/s, ETA 34 s`), and writes the rate as `steps_per_sec`.
  The clock starts at the first call, so that the first step's compilation is not counted as training."""

  def __init__(self, name: str, num_steps: int, writer: SummaryWriter, every_secs: float = 10.0,
               clock=time.monotonic):
    self.name, self.num_steps, self.writer, self.every_secs, self.clock = name, num_steps, writer, every_secs, clock
    self._last: tuple[int, float] | None = None

  def __call__(self, step: int) -> str | None:
    """The report made at this step, or None."""
    now = self.clock()
    if self._last is None:
      self._last = (step, now)
      return None
    last_step, last_time = self._last
    if now - last_time < self.every_secs or step <= last_step:
      return None
    rate = (step - last_step) / (now - last_time)
    self._last = (step, now)
    report = (f'{self.name}: step {step} of {self.num_steps} ({100 * step / self.num_steps:.0f}%), '
              f'{rate:.3g} steps/s, ETA {format_seconds((self.num_steps - step) / rate)}')
    logging.info('%s', report)
    self.writer.write_scalars(step, {'steps_per_sec': rate})
    return report
