"""The loop's TensorBoard summaries and progress reports (fn2en_jax/train/summaries.py): read back by TensorBoard's own
reader as TF2 summaries, and written without importing TensorFlow."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from conftest import REPO
from fn2en_jax.commands import evaluate
from fn2en_jax.train import summaries


@pytest.fixture
def info_log(caplog):
  """absl's INFO lines, whatever verbosity an earlier test in this worker left (the commands set WARNING)."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  with caplog.at_level(logging.INFO):
    yield caplog
  logging.set_verbosity(verbosity)


def _file(directory):
  (name,) = [n for n in directory.iterdir() if n.name.startswith('events.out.tfevents.')]
  return name


def _read(directory):
  events = event_accumulator.EventAccumulator(str(_file(directory)), size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  return events


def test_scalars_and_hparams_read_back_by_tensorboard(tmp_path, info_log):
  writer = summaries.SummaryWriter(str(tmp_path / 'tb'))
  writer.write_hparams({'learning_rate': 1e-3, 'optimizer': 'sgd', 'num_steps': 40, 'nesterov': True})
  writer.write_scalars(3, {'train/loss': np.float32(0.1), 'train/accuracy': jnp.asarray(0.25)})
  writer.write_scalars(7, {'train/loss': 1 / 3, 'validation/num_examples': 16})
  writer.close()
  assert '[3] train/loss=0.1, train/accuracy=0.25' in info_log.text

  events = _read(tmp_path / 'tb')
  assert events.file_version == 2.0  # TensorBoard's parse of summaries.FILE_VERSION: TF2 summaries
  assert sorted(events.Tags()['tensors']) == ['_hparams_/session_start_info',  # the HParams plugin's, below
                                              'train/accuracy', 'train/loss', 'validation/num_examples']
  loss = [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors('train/loss')]
  assert [step for step, _ in loss] == [3, 7]
  assert all(value.shape == () and value.dtype == np.float32 for _, value in loss)  # what tf.summary.scalar writes
  assert [float(v) for _, v in loss] == [float(np.float32(0.1)), float(np.float32(1 / 3))]
  assert events.SummaryMetadata('train/loss').plugin_data.plugin_name == 'scalars'
  # The hyperparameters go to TensorBoard's HParams plugin, each with its type.
  hparams = events.PluginTagToContent('hparams')
  assert len(hparams) == 1
  from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=import-outside-toplevel
  info = plugin_data_pb2.HParamsPluginData.FromString(next(iter(hparams.values()))).session_start_info
  assert info.hparams['learning_rate'].number_value == 1e-3 and info.hparams['optimizer'].string_value == 'sgd'
  assert info.hparams['num_steps'].number_value == 40 and info.hparams['nesterov'].bool_value
  # Read back without TensorFlow, the same scalars as TensorBoard's reader gives (the hparams are not scalars).
  expected = sorted((tag, e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                    for tag in events.Tags()['tensors'] if not tag.startswith('_hparams_') for e in events.Tensors(tag))
  assert sorted(summaries.read_scalars(str(_file(tmp_path / 'tb')))) == expected and len(expected) == 4


def test_a_record_cut_short_ends_the_file(tmp_path):
  writer = summaries.SummaryWriter(str(tmp_path))
  for step in (1, 2, 3):
    writer.write_scalars(step, {'train/loss': step / 2})
  writer.close()
  path = _file(tmp_path)
  whole = path.read_bytes()
  assert [step for _, step, _ in summaries.read_scalars(str(path))] == [1, 2, 3]
  path.write_bytes(whole[:-7])  # the writer killed inside the last record
  assert list(summaries.read_scalars(str(path))) == [('train/loss', 1, 0.5), ('train/loss', 2, 1.0)]


def test_a_resumed_run_adds_a_file_and_the_reader_keeps_the_newest_value(tmp_path):
  stage_dir = tmp_path / 'b'
  for _ in range(10):  # the files of this process past the 9th, whose numbers sort as text otherwise ('10' < '9')
    summaries.SummaryWriter(str(tmp_path / 'others')).close()
  first = summaries.SummaryWriter(str(stage_dir / 'tensorboard'))
  first.write_scalars(2, {'train/loss': 2.0})
  first.write_scalars(4, {'train/loss': 1.5})  # lost with the process: the resumed run logs step 4 again
  # Readable while the writer is open (TensorBoard follows a run as it trains).
  assert evaluate.training_curves(str(stage_dir)) == {'train/loss': ([2, 4], [2.0, 1.5])}
  first.close()
  second = summaries.SummaryWriter(str(stage_dir / 'tensorboard'))
  second.write_scalars(4, {'train/loss': 1.25})
  second.write_scalars(6, {'train/loss': 1.0})
  second.close()
  assert len(list((stage_dir / 'tensorboard').iterdir())) == 2
  assert evaluate.training_curves(str(stage_dir)) == {'train/loss': ([2, 4, 6], [2.0, 1.25, 1.0])}


def test_without_a_logdir_only_the_log(tmp_path, info_log, monkeypatch):
  monkeypatch.chdir(tmp_path)
  writer = summaries.SummaryWriter(None)
  writer.write_scalars(1, {'train/loss': 0.5})
  writer.write_hparams({'batch_size': 8})
  writer.close()
  assert '[1] train/loss=0.5' in info_log.text and '[hparams] batch_size=8' in info_log.text
  assert list(tmp_path.iterdir()) == []


class _Recorder:
  def __init__(self):
    self.written = []

  def write_scalars(self, step, scalars):
    self.written.append((step, dict(scalars)))


def test_progress_reports_the_rate_since_the_last_report_and_the_time_left():
  now = [100.0]
  writer = _Recorder()
  progress = summaries.Progress('b', 1000, writer, every_secs=10, clock=lambda: now[0])
  assert progress(1) is None  # the first step (its compilation) only starts the clock
  now[0] = 109.0
  assert progress(50) is None  # less than every_secs since the start
  now[0] = 120.0
  assert progress(101) == 'b: step 101 of 1000 (10%), 5 steps/s, ETA 3 min 00 s'  # (1000 - 101) / 5 = 179.8 s
  now[0] = 130.0
  assert progress(151) == 'b: step 151 of 1000 (15%), 5 steps/s, ETA 2 min 50 s'  # 50 steps in the last 10 s
  now[0] = 140.0
  assert progress(1000 - 20) == 'b: step 980 of 1000 (98%), 82.9 steps/s, ETA 0 s'
  assert writer.written == [(101, {'steps_per_sec': 5.0}), (151, {'steps_per_sec': 5.0}),
                            (980, {'steps_per_sec': 82.9})]
  assert summaries.format_seconds(3 * 3600 + 125) == '3 h 02 min' and summaries.format_seconds(59.4) == '59 s'


def test_a_training_process_does_not_import_tensorflow(tmp_path):
  """What the writer and reader are for: TensorFlow's import costs a training run, and `python -m
  fn2en_jax.evaluate`, seconds of CPU at every start."""
  code = ('import sys; from fn2en_jax import experiment; from fn2en_jax.train import loop, summaries; '
          'from fn2en_jax.commands import evaluate; '
          f'w = summaries.SummaryWriter({str(tmp_path / "tensorboard")!r}); w.write_scalars(1, {{"x": 1.0}}); '
          f'w.write_hparams({{"y": 2}}); w.close(); print(evaluate.training_curves({str(tmp_path)!r})); '
          'print("tensorflow" in sys.modules, "tensorboard" in sys.modules)')
  done = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.splitlines()[-2:] == ["{'x': ([1], [1.0])}", 'False True'], done.stdout[-2000:]
