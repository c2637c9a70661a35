"""Beyond one process: two real `python -m fn2en_jax.main` processes on localhost, joined by JAX's distributed
runtime (CPU collectives through gloo), each with 2 fake CPU devices: one 4-device mesh over 2 hosts. Also what
a host sees when another dies, and SIGTERM (preemption) on one and on two processes.

Two runs serve every test that needs real processes (marked slow: minutes): a 2-host run of every stage, compared
with the session's 1-process run of the same config (`tiny_run`; the evaluation, who writes what), and the
interruptions fixture (SIGTERM, a dead host, reruns and a restart)."""

import json
import os
import re
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
  return _read_state(checkpoint.latest_state_path(str(stage_dir)))


def _read_state(path):
  with ocp.PyTreeCheckpointer() as ckpt:
    stored = ckpt.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), stored)
    return ckpt.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


# The two-host run and the one-process run it is compared with train every stage with SGD at a constant rate
# (momentum 0.9, weight decay 5e-4, lr 1e-3: tests/tiny_config.py). AdamW divides each update by the root of its
# second moment: an element whose gradient is ~0 gets an update anywhere in +-lr from rounding alone, so after Adam
# steps two runs that differ in rounding can differ by up to 2 lr per step in any element, whatever the wiring.
# SGD's update is proportional to the gradient, and so is its rounding error. The SIGTERM and dead-host runs below
# train the scratch stage the same way, so that they run the programs the tiny run compiled (the persistent cache
# of tests/conftest.py) and compile nothing.


@pytest.fixture(scope='module')
def two_host_run(tmp_path_factory, tiny_run):
  """Every stage trained by 2 hosts of 2 devices, and the session's run of the same config by 1 process of 4
  devices (`tiny_run`, tests/conftest.py): (two-host workdir, one-process workdir, the two hosts' logs)."""
  one_process, data_dir, _ = tiny_run  # the datasets are built: every process only reads them
  root = tmp_path_factory.mktemp('two_hosts')
  codes, logs = _wait(_start(root / 'work', data_dir))
  assert codes == [0, 0], '\n\n'.join(log[-3000:] for log in logs)
  return root / 'work', one_process, logs


# How far apart two runs may end that differ only in the order in which float32 sums add up (the hosts' partial
# sums of the gradient and of the BatchNorm statistics meet in gloo across processes, in XLA within one). With u
# the unit roundoff (2**-24), two orders of a sum of n terms differ by at most 2 (n - 1) u times the sum of the
# terms' magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 4.2). One step depends on a chain of
# such sums; the longest is stage a's: the teacher's forward pass to pool5 (13 convolutions of 9 C_in terms, 2115
# in all at width 1/16), the student's forward and backward convolutions (243 + 288), BatchNorm's sums over a
# device's 2 x 32 x 32 pixels and the smaller maps, forward and backward (2 x 2728), the kernel gradient's sum over
# a device's 2048 positions and the 4-device mean: n < 11,000. Where no sum cancels at the scale of its tensor,
# relative errors add along the chain: what one step adds to a tensor is off by at most C u times its size, with
# C = 2 x 11,000. A tensor has received at most K = 8 such steps (its stage's 4 and, for the face stage's teacher
# and stage b's trunk, the 4 of the stage it was read from), each of which also rounds it to float32 (one ulp,
# 2 u |x|, further apart at most). So
#     |two - one| <= u (2 K max|x| + C K S),
# where S bounds what one step adds: for parameters, the update, and with a constant rate and momentum no step moves
# a tensor further than its last two steps did (measured in the one-process run; the larger of its stage's and of
# the stage it was read from); for the momenta and the BatchNorm running statistics, sums of per-step gradients and
# batch statistics of their own size, max|x| (or their last two steps' change, if larger). These are worst
# cases: summation errors grow far slower in practice. What the comparison guards against, a host training on
# other examples or a gradient summed instead of averaged, changes an update by its own size: the tolerance is
# checked to stay below what the last two steps changed in every kernel.
U = 2.0 ** -24
C = 2 * 11_000
K = 8
READS = {'face': 'face_pretrain', 'b': 'a'}  # the stage whose tensors a stage starts from


@pytest.mark.slow
def test_two_hosts_train_every_stage_like_one_process_of_four_devices(two_host_run):
  two_dir, one_dir, _ = two_host_run
  scales = {}
  for stage in STAGES:
    two, one = _final_state(two_dir / stage), _final_state(one_dir / stage)
    earlier = _read_state(str(one_dir / stage / '2' / 'state'))
    assert int(two['step']) == int(one['step']) == 4
    # The validation subjects chose the same checkpoint (the next stage starts from it).
    chosen = [json.loads((d / stage / 'summary.json').read_text())['selected_step'] for d in (two_dir, one_dir)]
    assert chosen[0] == chosen[1], (stage, chosen)
    scales[stage] = {}
    for collection in ('params', 'batch_stats', 'opt_state'):
      before = dict(_flat(earlier[collection]))
      assert [k for k, _ in _flat(two[collection])] == [k for k, _ in _flat(one[collection])] == list(before)
      for (key, x), y in zip(_flat(two[collection]), jax.tree.leaves(one[collection])):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, (stage, collection, key)
        if x.dtype.kind != 'f':  # step counts
          np.testing.assert_array_equal(x, y, err_msg=f'{stage} {collection}{key}')
          continue
        moved = scales[stage][collection + key] = float(np.max(np.abs(y - before[key])))
        size = float(np.max(np.abs(y)))
        if collection == 'params':
          step = max(moved, scales.get(READS.get(stage), {}).get(collection + key, 0.0))
        else:
          step = max(moved, size)
        tol = U * (2 * K * size + C * K * step)
        np.testing.assert_allclose(x, y, rtol=0, atol=tol, err_msg=f'{stage} {collection}{key}')
        if collection == 'params' and y.ndim > 1:  # what a wrong batch would change stays outside the tolerance
          assert tol < moved, (stage, key, tol, moved)


def _flat(tree):
  return [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.slow
def test_two_hosts_evaluate_every_test_example_once(two_host_run):
  workdir, single_dir, _ = two_host_run
  results = json.loads((workdir / 'results.json').read_text())
  single = json.loads((single_dir / 'results.json').read_text())
  for stage in ('face', 'b', 'scratch'):
    counts = np.asarray(results['stages'][stage]['confusion_matrix'])
    assert counts.sum() == results['stages'][stage]['num_examples'] == 16
    assert results['stages'][stage]['num_examples'] == single['stages'][stage]['num_examples']


@pytest.mark.slow
def test_only_process_0_writes_results_summaries_and_tensorboard(two_host_run):
  workdir, _, logs = two_host_run
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


# Interruptions: the scratch stage alone, far more steps than run before the signal or the kill (a quiet machine
# does 400 in 16 s), evaluated and logged never; trained as the tiny run trains it (SGD), so that the same programs
# run.
NEVER = 100000
INTERRUPTED = ('--config.stages=("scratch",)', f'--config.stage_scratch.num_steps={NEVER}',
               f'--config.stage_scratch.eval_every={NEVER}', f'--config.stage_scratch.log_every={NEVER}')


def _saved_steps(stage_dir):
  return sorted(int(d) for d in os.listdir(stage_dir) if d.isdigit()) if stage_dir.exists() else []


@pytest.fixture(scope='module')
def interruptions(tmp_path_factory, tiny_run):
  """SIGTERM, a dead host and restarts, on one 2-host run and one 1-process run, which run side by side (much of
  their time is spent starting processes and waiting for the heartbeat timeout):
  1. SIGTERM to process 0 of each as its steps start (no periodic checkpoint: only the preemption saves);
  2. the reruns: the 1-process one trains 5 steps past the preempted step and ends; the 2-host one checkpoints every
     5 steps and, after its first checkpoint past the preempted step, loses host 1 to SIGKILL;
  3. the 2-host restart trains 5 steps past its last checkpoint.
  Returns what each part showed, for the tests below to check."""
  _, data_dir, _ = tiny_run
  root = tmp_path_factory.mktemp('interrupted')
  two, one = root / 'two_hosts', root / 'one_process'
  preempt = (*INTERRUPTED, f'--config.stage_scratch.checkpoint_every={NEVER}')
  out = {'two': {}, 'one': {}}
  everything = []  # ended here if a part fails, so that no process outlives the test
  try:
    # 1. SIGTERM.
    started = {'two': _start(two, data_dir, *preempt), 'one': _start(one, data_dir, *preempt, processes=1)}
    everything += [proc for procs in started.values() for proc, _ in procs]
    for procs in started.values():
      _wait_for_training(procs[0][1], procs)
      procs[0][0].send_signal(signal.SIGTERM)  # one host preempted: every host must stop at the same step
    for name, workdir in (('two', two), ('one', one)):
      out[name]['sigterm_codes'], out[name]['sigterm_logs'] = _wait(started[name], timeout=300)
      out[name]['preempted'] = _saved_steps(workdir / 'scratch')
    # 2. The reruns.
    preempted = max(out['one']['preempted'], default=0)  # a few more steps show the resume
    one_rerun = _start(one, data_dir, *preempt, f'--config.stage_scratch.num_steps={preempted + 5}', processes=1,
                       log_dir=str(root / 'one_rerun'))
    every5 = (*INTERRUPTED, '--config.stage_scratch.checkpoint_every=5')
    two_rerun = _start(two, data_dir, *every5, log_dir=str(root / 'two_rerun'))
    everything += [proc for proc, _ in one_rerun + two_rerun]
    try:
      _wait_for_checkpoint(two / 'scratch', two_rerun, after=max(out['two']['preempted'], default=0))
      two_rerun[1][0].kill()
      killed_at = time.monotonic()
      out['two']['survivor_code'] = two_rerun[0][0].wait(timeout=HEARTBEAT_S + 120)
      out['two']['waited'] = time.monotonic() - killed_at
    finally:
      for proc, _ in two_rerun:
        proc.kill()
        proc.wait()
    out['two']['rerun_log'] = open(two_rerun[0][1]).read()
    out['two']['last'] = max(_saved_steps(two / 'scratch'))
    out['one']['rerun_codes'], out['one']['rerun_logs'] = _wait(one_rerun)
    # 3. The restart only has to show that it resumes: a few more steps (num_steps may change on resume) will do.
    again = (*every5, f'--config.stage_scratch.num_steps={out["two"]["last"] + 5}')
    restart = _start(two, data_dir, *again, log_dir=str(root / 'two_restart'))
    everything += [proc for proc, _ in restart]
    out['two']['restart_codes'], out['two']['restart_logs'] = _wait(restart)
    if out['two']['restart_codes'] == [0, 0]:
      out['two']['final_step'] = int(_final_state(two / 'scratch')['step'])
  except BaseException:
    for proc in everything:
      proc.kill()
      proc.wait()
    raise
  return out


@pytest.mark.slow
def test_sigterm_on_one_process_saves_a_checkpoint_exits_6_and_the_rerun_resumes(interruptions):
  out = interruptions['one']
  assert out['sigterm_codes'] == [errors.PREEMPTED], out['sigterm_logs'][0][-3000:]
  assert 'stopped by SIGTERM after step' in out['sigterm_logs'][0]
  saved = out['preempted']
  assert len(saved) == 1 and 0 < saved[0] < NEVER  # no periodic checkpoint: only the preemption saved
  assert out['rerun_codes'] == [0], out['rerun_logs'][0][-3000:]
  assert f'resumed from step {saved[0]} of {saved[0] + 5}' in out['rerun_logs'][0]


@pytest.mark.slow
def test_sigterm_on_one_of_two_hosts_saves_a_checkpoint_exits_6_and_the_rerun_resumes(interruptions):
  out = interruptions['two']
  assert out['sigterm_codes'] == [errors.PREEMPTED] * 2, '\n\n'.join(l[-3000:] for l in out['sigterm_logs'])
  assert 'stopped by SIGTERM after step' in out['sigterm_logs'][0]
  saved = out['preempted']
  assert len(saved) == 1 and 0 < saved[0] < NEVER  # no periodic checkpoint: only the preemption saved
  # The rerun resumes from it and trains on, checkpointing, until host 1 is killed (the test below); the restart
  # after that ends on both hosts.
  assert f'resumed from step {saved[0]} of {NEVER}' in out['rerun_log'], out['rerun_log'][-3000:]
  assert out['last'] > saved[0]
  assert out['restart_codes'] == [0, 0], '\n\n'.join(l[-3000:] for l in out['restart_logs'])


@pytest.mark.slow
def test_a_dead_host_stops_the_other_and_a_restart_resumes(interruptions):
  out = interruptions['two']
  # JAX's coordination service notices the missing heartbeats and ends the survivor (abort, from C++: no Python
  # handler runs), saying why, instead of leaving it blocked in a collective. The bound: the heartbeat timeout, plus
  # what a loaded 2-core machine adds.
  assert out['survivor_code'] == -signal.SIGABRT and out['waited'] < HEARTBEAT_S + 120, (out['survivor_code'],
                                                                                        out['waited'])
  assert 'another task died' in out['rerun_log'], out['rerun_log'][-2000:]
  last = out['last']
  assert out['restart_codes'] == [0, 0], '\n\n'.join(l[-3000:] for l in out['restart_logs'])
  assert f'resumed from step {last} of {last + 5}' in out['restart_logs'][0]
  assert out['final_step'] == last + 5


def _wait_for_checkpoint(stage_dir, started, after=0, timeout=300):
  """Until stage_dir holds a finished checkpoint of a step > `after`."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if any(step > after for step in _saved_steps(stage_dir)):
      return
    assert all(p.poll() is None for p, _ in started), open(started[0][1]).read()[-3000:]
    time.sleep(0.5)
  raise TimeoutError(f'no checkpoint after step {after} in {stage_dir} after {timeout} s')


def _wait_for_training(log, started, timeout=300):
  """Until the stage starts its steps (the loop logs its sizes first). SIGTERM is watched from the start of the run
  (fn2en_jax/train/preemption.py), so a signal from here on lands in the first steps, which end with a checkpoint
  and exit 6; the first progress report, 10 s into the steps, need not be waited for."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if re.search(r'scratch: \d+ train / .* steps of batch', open(log).read()):
      return
    assert all(p.poll() is None for p, _ in started), open(log).read()[-3000:]
    time.sleep(0.2)
  raise TimeoutError('the stage did not start')
