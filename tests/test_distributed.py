"""Beyond one process: two real `python -m fn2en_jax.main` processes on localhost, joined by JAX's distributed
runtime (CPU collectives through gloo), each with 2 fake CPU devices: one 4-device mesh over 2 hosts. Also what
a host sees when another dies, and SIGTERM (preemption) on one and on two processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import tiny_config
from fn2en_jax import errors
from fn2en_jax.data import pipeline
from fn2en_jax.train import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ('face_pretrain', 'face', 'a', 'b', 'scratch')
HEARTBEAT_S = 10


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  flags = os.environ.get('XLA_FLAGS', '').replace('--xla_force_host_platform_device_count=4', '')
  return dict(os.environ, XLA_FLAGS=f'{flags} --xla_force_host_platform_device_count={devices}'.strip())


def _start(workdir, data_dir, *overrides, processes=2, log_dir=None):
  """Starts the run's processes (2: a 2-host run; 1: one process of 4 devices); returns [(Popen, log path)]."""
  port = _free_port()
  started = []
  for i in range(processes):
    cmd = [sys.executable, '-m', 'fn2en_jax.main', '--config=tests/tiny_config.py', f'--workdir={workdir}',
           f'--config.data_dir={data_dir}', *overrides]
    if processes > 1:
      cmd += [f'--coordinator_address=localhost:{port}', f'--num_processes={processes}', f'--process_id={i}',
              f'--heartbeat_timeout_s={HEARTBEAT_S}']
    log = os.path.join(log_dir or str(workdir) + '_logs', f'process_{i}.log')
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, 'w') as f:
      proc = subprocess.Popen(cmd, cwd=REPO, env=_env(2 if processes > 1 else 4), stdout=f, stderr=subprocess.STDOUT)
    started.append((proc, log))
  return started


def _wait(started, timeout=1200):
  codes = [proc.wait(timeout=timeout) for proc, _ in started]
  return codes, [open(log).read() for _, log in started]


def _final_state(stage_dir):
  """The stage's newest state as numpy arrays, whatever mesh wrote it (a 2-host one cannot be rebuilt here)."""
  path = checkpoint.latest_state_path(str(stage_dir))
  with ocp.PyTreeCheckpointer() as ckpt:
    stored = ckpt.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), stored)
    return ckpt.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


@pytest.fixture(scope='module')
def two_host_run(tmp_path_factory, tiny_run):
  _, data_dir, _ = tiny_run  # the datasets are built: both hosts only read them
  workdir = tmp_path_factory.mktemp('two_hosts') / 'work'
  codes, logs = _wait(_start(workdir, data_dir))
  assert codes == [0, 0], '\n\n'.join(log[-3000:] for log in logs)
  return workdir, logs


def test_two_hosts_train_every_stage_like_one_process_of_four_devices(two_host_run, tiny_run):
  workdir, _ = two_host_run
  single, _, _ = tiny_run  # the same config in one process of 4 devices
  for stage in STAGES:
    two, one = _final_state(workdir / stage), _final_state(single / stage)
    assert int(two['step']) == int(one['step']) == 4
    # The same batches on the same devices; only the order in which the hosts' partial sums of the gradient
    # all-reduce add up (gloo across processes, XLA in one) differs, a float32 rounding difference that 4 Adam
    # steps amplify at most to this: well below any change in the data or in the model.
    for collection in ('params', 'batch_stats', 'opt_state'):
      jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), two[collection],
                   one[collection])


def test_two_hosts_evaluate_every_test_example_once(two_host_run, tiny_run):
  workdir, _ = two_host_run
  results = json.loads((workdir / 'results.json').read_text())
  single = json.loads((tiny_run[0] / 'results.json').read_text())
  for stage in ('face', 'b', 'scratch'):
    counts = np.asarray(results['stages'][stage]['confusion_matrix'])
    assert counts.sum() == results['stages'][stage]['num_examples'] == 16
    assert results['stages'][stage]['num_examples'] == single['stages'][stage]['num_examples']


def test_only_process_0_writes_results_summaries_and_tensorboard(two_host_run):
  workdir, logs = two_host_run
  assert '| FN2EN |' in logs[0] and '| FN2EN |' not in logs[1]
  assert (workdir / 'results.md').exists() and (workdir / 'config.json').exists()
  for stage in STAGES:
    assert (workdir / stage / 'summary.json').exists()
    events = [n for n in os.listdir(workdir / stage / 'tensorboard') if n.startswith('events.out.tfevents')]
    assert len(events) == 1, events
    # One Orbax checkpoint per saved step, written by both hosts together, and no unfinished one left.
    assert sorted(d for d in os.listdir(workdir / stage) if d[0].isdigit()) == ['2', '4']
    assert not [d for d in os.listdir(workdir / stage) if 'tmp' in d]


def test_hosts_read_disjoint_blocks_of_the_single_process_batches(tiny_run):
  _, data_dir, _ = tiny_run
  config = tiny_config.get_config()
  config.data_dir = str(data_dir)
  train = pipeline.splits(config.data, str(data_dir)).train
  # The image carries no id, so tag every example with its position through the label column.
  tagged = pipeline.Examples(_Tagged(train), np.arange(len(train)), train.labels, train.subjects, train.class_names)
  one = pipeline.train_iterator(tagged, config.data, global_batch_size=8, seed=0, host=(0, 1))
  two = [pipeline.train_iterator(tagged, config.data, global_batch_size=8, seed=0, host=(i, 2)) for i in (0, 1)]
  seen = []
  for _ in range(2 * len(train) // 8):  # two epochs
    whole, halves = next(one), [next(it) for it in two]
    np.testing.assert_array_equal(np.concatenate([h['label'] for h in halves]), whole['label'])
    np.testing.assert_array_equal(np.concatenate([h['image'] for h in halves]), whole['image'])
    assert not set(halves[0]['label']) & set(halves[1]['label'])
    seen.extend(whole['label'])
  epoch = len(train) // 8 * 8
  assert sorted(seen[:epoch]) == sorted(set(seen[:epoch]))  # no example twice within an epoch


class _Tagged:
  def __init__(self, examples):
    self._examples = examples

  def __len__(self):
    return len(self._examples)

  def __getitem__(self, i):
    return {**self._examples[i], 'label': i}


@pytest.mark.parametrize('n', [16, 13, 5])
def test_eval_batches_cover_every_example_once_with_an_uneven_last_batch(n):
  arrays = {'image': np.arange(n, dtype=np.float32)[:, None], 'label': np.arange(n, dtype=np.int32)}
  gathered = []
  for blocks in zip(*(pipeline.eval_batches(arrays, 12, host=(i, 2)) for i in (0, 1))):
    for block in blocks:
      assert len(block['label']) == 6
      gathered.extend(block['label'][block['mask']])
  assert gathered == list(range(n))


def test_a_dead_host_stops_the_other_and_a_restart_resumes(tmp_path, tiny_run):
  _, data_dir, _ = tiny_run
  workdir = tmp_path / 'work'
  steps = ('--config.stages=("scratch",)', '--config.stage_scratch.num_steps=400',
           '--config.stage_scratch.checkpoint_every=5', '--config.stage_scratch.eval_every=1000',
           '--config.stage_scratch.log_every=1000')
  started = _start(workdir, data_dir, *steps)
  _wait_for_checkpoint(workdir / 'scratch', started)
  started[1][0].kill()
  killed_at = time.monotonic()
  code = started[0][0].wait(timeout=HEARTBEAT_S + 120)
  waited = time.monotonic() - killed_at
  log = open(started[0][1]).read()
  # JAX's coordination service notices the missing heartbeats and ends the survivor (abort, from C++: no Python
  # handler runs), saying why, instead of leaving it blocked in a collective. The bound: the heartbeat timeout, plus
  # what a loaded 2-core machine adds.
  assert code == -signal.SIGABRT and waited < HEARTBEAT_S + 120, (code, waited)
  assert 'another task died' in log, log[-2000:]
  last = max(int(d) for d in os.listdir(workdir / 'scratch') if d.isdigit())
  # The restart only has to show that it resumes: a few more steps (num_steps may change on resume) will do.
  again = (*steps, f'--config.stage_scratch.num_steps={last + 5}')
  codes, logs = _wait(_start(workdir, data_dir, *again, log_dir=str(tmp_path / 'restart')))
  assert codes == [0, 0], '\n\n'.join(l[-3000:] for l in logs)
  assert f'resumed from step {last} of {last + 5}' in logs[0]
  assert int(_final_state(workdir / 'scratch')['step']) == last + 5


def _wait_for_checkpoint(stage_dir, started, timeout=300):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if stage_dir.exists() and any(d.isdigit() for d in os.listdir(stage_dir)):
      return
    assert all(p.poll() is None for p, _ in started), open(started[0][1]).read()[-3000:]
    time.sleep(0.5)
  raise TimeoutError(f'no checkpoint in {stage_dir} after {timeout} s')


@pytest.mark.parametrize('processes', [1, 2])
def test_sigterm_saves_a_checkpoint_exits_6_and_the_rerun_resumes(tmp_path, tiny_run, processes):
  _, data_dir, _ = tiny_run
  workdir = tmp_path / 'work'
  # Far more steps than it runs before the signal (a quiet machine does 400 in 16 s), and no periodic checkpoint.
  steps = ('--config.stages=("scratch",)', '--config.stage_scratch.num_steps=100000',
           '--config.stage_scratch.checkpoint_every=100000', '--config.stage_scratch.eval_every=100000',
           '--config.stage_scratch.log_every=100000')
  started = _start(workdir, data_dir, *steps, processes=processes)
  _wait_for_progress(started[0][1], started)
  started[0][0].send_signal(signal.SIGTERM)  # one host preempted: every host must stop at the same step
  codes, logs = _wait(started, timeout=300)
  assert codes == [errors.PREEMPTED] * processes, '\n\n'.join(l[-3000:] for l in logs)
  assert 'stopped by SIGTERM after step' in logs[0]
  saved = [int(d) for d in os.listdir(workdir / 'scratch') if d.isdigit()]
  assert len(saved) == 1 and 0 < saved[0] < 100000  # no periodic checkpoint: only the preemption saved
  again = (*steps, f'--config.stage_scratch.num_steps={saved[0] + 5}')  # a few more steps show the resume
  codes, logs = _wait(_start(workdir, data_dir, *again, processes=processes, log_dir=str(tmp_path / 'rerun')))
  assert codes == [0] * processes, '\n\n'.join(l[-3000:] for l in logs)
  assert f'resumed from step {saved[0]} of {saved[0] + 5}' in logs[0]


def _wait_for_progress(log, started, timeout=300):
  """Until the first training steps ran (ReportProgress logs steps/s every few seconds)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if 'steps/s' in open(log).read() or 'Setting work unit notes' in open(log).read():
      return
    assert all(p.poll() is None for p, _ in started), open(log).read()[-3000:]
    time.sleep(0.5)
  raise TimeoutError('no training progress logged')
