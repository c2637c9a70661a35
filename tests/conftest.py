"""Four fake CPU devices for every test, so the data-parallel code runs sharded as on a GPU/TPU host, and one
compilation cache for the session, so that the end-to-end tests (in this process and in `python -m` subprocesses)
compile each train step once.

XLA's CPU backend compiles at LLVM optimisation level 0 here: most of the suite's time was compilation of tiny
programs that then run for milliseconds (tests/test_layers.py took 2.2 times as long at the default level, a
tiny run of every stage 1.4 times). The level changes how fast XLA's own loops run, not the HLO they implement;
the convolutions and matrix products run in the same precompiled Eigen kernels; and where a test could see a
difference in rounding, it compares a program with itself or uses a bound that holds for any order of the sums.

The flags must be set before JAX initialises, hence here, at import time, through the environment.
"""

import atexit
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

# pytest-xdist's workers inherit this environment from the controlling process, which imported this file first:
# they keep its flags and share its cache (a program one worker compiled, the other reads) rather than each
# making its own. The process that made the cache removes it.
if 'FN2EN_JAX_TEST_CACHE' not in os.environ:
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4'
                             ' --xla_backend_optimization_level=0').strip()
  os.environ['FN2EN_JAX_TEST_CACHE'] = tempfile.mkdtemp(prefix='fn2en_jax_xla_cache_')
  os.environ['FN2EN_JAX_TEST_RUNS'] = tempfile.mkdtemp(prefix='fn2en_jax_test_runs_')
  for name in ('FN2EN_JAX_TEST_CACHE', 'FN2EN_JAX_TEST_RUNS'):
    atexit.register(shutil.rmtree, os.environ[name], ignore_errors=True)
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ['FN2EN_JAX_TEST_CACHE']
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
  """The files with `slow` tests first (each file's own order kept): the workers take whole files in this order,
  so the few long files start at once, on different workers, instead of one of them starting last."""
  del config
  slow_files = {item.path for item in items if item.get_closest_marker('slow')}
  items.sort(key=lambda item: item.path not in slow_files)  # stable: False (a slow file) sorts first


def pytest_xdist_auto_num_workers(config):
  """`-n auto` (pyproject.toml): one worker per core, at most 4.

  Most of the suite's time is single-threaded (Python imports, tracing, XLA compiling tiny programs, processes
  waiting on each other), so two workers keep two cores busy where one kept one. A file's tests stay on one
  worker (`--dist loadfile`), so that its module-scoped runs (the two-host runs, the interruptions) are made
  once; the session's shared run (`tiny_run`) is made once for all workers (`shared_run`), and a worker that
  needs it while another makes it waits for it; the cap bounds memory (every worker and each
  `python -m` it starts holds JAX and TF).
  """
  del config
  return max(1, min(4, len(os.sched_getaffinity(0))))


@pytest.fixture(scope='session')
def run_main():
  """`python -m fn2en_jax.main --config=tests/tiny_config.py` as a user runs it; returns its stdout."""

  def run(workdir, data_dir, *overrides):
    cmd = [sys.executable, '-m', 'fn2en_jax.main', '--config=tests/tiny_config.py', f'--workdir={workdir}',
           f'--config.data_dir={data_dir}', *overrides]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout

  return run


def shared_run(name: str, make):
  """(root, what `make(root)` returns (JSON)), made once for the whole session, in every worker: the first worker
  to ask makes it in `root`, a folder of the session's own (the controller's, removed at its exit), while the others
  wait on a lock, then read its result; a failure is recorded and raised in every worker that asks, not retried.
  The folder is shared: a test that changes what is in it works on a copy."""
  root = pathlib.Path(os.environ['FN2EN_JAX_TEST_RUNS']) / name
  done = root.with_suffix('.json')
  with open(root.with_suffix('.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not done.exists():
        try:
          result = {'ok': make(root)}
        except BaseException as e:  # pylint: disable=broad-exception-caught
          result = {'failed': f'{type(e).__name__}: {e}'}
          raise
        finally:
          done.write_text(json.dumps(result))
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  result = json.loads(done.read_text())
  if 'failed' in result:
    pytest.fail(f'the shared run {name!r} failed in another test: {result["failed"]}'[-3000:], pytrace=False)
  return root, result['ok']


@pytest.fixture(scope='session')
def tiny_run(run_main):
  """One finished run of every stage on tiny synthetic faces, shared by every worker: (workdir, data_dir,
  stdout). Read-only: a test that writes into a workdir copies it first."""
  root, stdout = shared_run('tiny', lambda root: run_main(root / 'work', root / 'tfds'))
  return root / 'work', root / 'tfds', stdout
