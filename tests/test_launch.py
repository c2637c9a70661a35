"""The launch scripts as a user runs them, on this machine, which has no TPU slice, SLURM cluster or GPU.

Checked: --help; the --dry-run command lines (run with an empty PATH, so they need no tool); that a real run runs
exactly what the dry run printed, with stand-in gcloud, git, sbatch, srun and python on PATH that record their
arguments (the real ones would create cloud resources, are not installed, or would start a training run); the
commands a TPU worker runs, executed here by bash; and the one-line errors for a missing tool or argument.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASH = shutil.which('bash')
SCRIPTS = ('gpu.sh', 'gpu_multinode.sh', 'tpu_pod.sh')
TPU_COMMANDS = ('create', 'run', 'logs', 'delete', 'resume')
# An override with quotes, parentheses and commas, and an environment value with a space: both must reach the
# training process unchanged through every level of quoting (ssh --command, sbatch --wrap).
STAGES = "--config.stages=('face','a')"
ENV = 'A=x y'
RUN_ARGS = ('--config=configs/sfew.py', f'--env={ENV}', STAGES, '--', '--verbose')
TPU = ('--tpu=fn2en', '--zone=us-central2-b')

FAKE = '''#!{python}
import json, os, signal, sys, time
if os.environ.get('FAKE_SLEEP'):  # a long run: stops on SIGTERM with a preemption's exit code, as fn2en_jax does
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(6))
with open(os.environ['FAKE_RECORD'], 'a') as f:
  f.write(json.dumps({{'argv': [os.path.basename(sys.argv[0])] + sys.argv[1:], 'cwd': os.getcwd(),
                      'env': {{k: os.environ.get(k) for k in ('A', 'XLA_PYTHON_CLIENT_PREALLOCATE')}}}}) + '\\n')
time.sleep(float(os.environ.get('FAKE_SLEEP', '0')))
sys.exit(int(os.environ.get('FAKE_EXIT', '0')))
'''


def train(*flags, workdir, dtype='--config.dtype=bfloat16'):
  """The training command the scripts must run, as argv (an independent spelling of it)."""
  return ['python', '-m', 'fn2en_jax.main', *flags, '--config=configs/sfew.py', f'--workdir={workdir}', dtype,
          STAGES, '--verbose']


@pytest.fixture
def bins(tmp_path):
  """Directories for PATH: 'empty', and 'fakes' with recording stand-ins for every tool (plus the real `env`)."""
  empty, fakes = tmp_path / 'empty', tmp_path / 'fakes'
  empty.mkdir()
  fakes.mkdir()
  for tool in ('gcloud', 'git', 'sbatch', 'srun', 'python'):
    (fakes / tool).write_text(FAKE.format(python=sys.executable))
    (fakes / tool).chmod(0o755)
  os.symlink(shutil.which('env'), fakes / 'env')
  return {'empty': str(empty), 'fakes': str(fakes), 'record': str(tmp_path / 'record.jsonl'), 'tmp': tmp_path}


def launch(bins, script, *args, path, **env):
  full_env = {'PATH': path, 'HOME': str(bins['tmp']), 'TMPDIR': str(bins['tmp']), 'FAKE_RECORD': bins['record'],
              **env}
  return subprocess.run([BASH, os.path.join(REPO, 'launch', script), *args], env=full_env, cwd=REPO,
                        capture_output=True, text=True, timeout=60)


def dry_run(bins, script, *args):
  done = launch(bins, script, '--dry-run', *args, path=bins['empty'])
  assert done.returncode == 0, done.stderr
  assert done.stderr == ''
  return [shlex.split(line) for line in done.stdout.splitlines()]


def recorded(bins):
  if not os.path.exists(bins['record']):
    return []
  with open(bins['record']) as f:
    return [json.loads(line) for line in f]


def option(argv, name):
  values = [a.split('=', 1)[1] for a in argv if a.startswith(f'{name}=')]
  assert len(values) == 1, (name, argv)
  return values[0]


def contains(words, part):
  return any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


@pytest.mark.parametrize('script', SCRIPTS)
def test_help(bins, script):
  done = launch(bins, script, '--help', path=bins['empty'])
  assert done.returncode == 0 and done.stderr == ''
  assert done.stdout.startswith(f'usage: {script} ')
  assert '--dry-run' in done.stdout
  if script == 'tpu_pod.sh':
    for command in TPU_COMMANDS:
      assert f'\n  {command} ' in done.stdout
      assert launch(bins, script, command, '--help', path=bins['empty']).stdout == done.stdout


def test_gpu_dry_run(bins):
  [line] = dry_run(bins, 'gpu.sh', '--workdir=/runs/sfew', *RUN_ARGS)
  assert line == ['env', 'XLA_PYTHON_CLIENT_PREALLOCATE=false', ENV, *train(workdir='/runs/sfew')]
  # The user's dtype and preallocation replace the defaults instead of adding to them.
  [line] = dry_run(bins, 'gpu.sh', '--workdir=/r', '--env=XLA_PYTHON_CLIENT_PREALLOCATE=true', *RUN_ARGS[:3],
                   '--config.dtype=float32', *RUN_ARGS[3:])
  assert line[:3] == ['env', 'XLA_PYTHON_CLIENT_PREALLOCATE=true', ENV]
  assert [w for w in line if 'dtype' in w] == ['--config.dtype=float32']


def test_gpu_runs_what_dry_run_prints(bins):
  [printed] = dry_run(bins, 'gpu.sh', '--workdir=/runs/sfew', *RUN_ARGS)
  # A preempted run exits with 6: the script must pass that on (it execs the training process).
  done = launch(bins, 'gpu.sh', '--workdir=/runs/sfew', *RUN_ARGS, path=bins['fakes'], FAKE_EXIT='6')
  assert done.returncode == 6, done.stderr
  [call] = recorded(bins)
  assert call['argv'] == printed[3:]
  assert call['env'] == {'A': 'x y', 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}


def test_multinode_dry_run_and_run(bins):
  args = ('--workdir=/shared/runs/sfew', '--nodes=2', '--gpus-per-node=8', '--sbatch-arg=--partition=gpu a',
          *RUN_ARGS)
  [sbatch] = dry_run(bins, 'gpu_multinode.sh', *args)
  step = ['srun', '--nodes=2', '--ntasks-per-node=8', '--gpus-per-node=8', 'env', 'XLA_PYTHON_CLIENT_PREALLOCATE=false',
          ENV, *train('--distributed', workdir='/shared/runs/sfew')]
  assert sbatch[0] == 'sbatch'
  for flag in ('--nodes=2', '--ntasks-per-node=8', '--gpus-per-node=8', '--signal=TERM@120', '--requeue',
               '--partition=gpu a'):
    assert flag in sbatch
  assert shlex.split(option(sbatch, '--wrap')) == step
  assert dry_run(bins, 'gpu_multinode.sh', '--no-submit', *args) == [step]

  done = launch(bins, 'gpu_multinode.sh', *args, path=bins['fakes'])
  assert done.returncode == 0, done.stderr
  assert [c['argv'] for c in recorded(bins)] == [sbatch]
  # sbatch runs --wrap with sh: with the stand-in srun first on PATH, sh must hand it exactly the step.
  os.remove(bins['record'])
  subprocess.run(['/bin/sh', '-c', option(sbatch, '--wrap')], check=True, timeout=60,
                 env={'PATH': bins['fakes'], 'FAKE_RECORD': bins['record']})
  [call] = recorded(bins)
  assert call['argv'] == step
  os.remove(bins['record'])
  done = launch(bins, 'gpu_multinode.sh', '--no-submit', *args, path=bins['fakes'], FAKE_EXIT='7')
  assert done.returncode == 7  # a lost peer's exit code reaches the caller
  assert [c['argv'] for c in recorded(bins)] == [step]


def test_tpu_create_delete_logs_dry_run(bins):
  gcloud = ['gcloud', 'compute', 'tpus', 'tpu-vm']
  where = ['--zone=us-central2-b']
  assert dry_run(bins, 'tpu_pod.sh', 'create', *TPU) == [
      [*gcloud, 'create', 'fn2en', *where, '--accelerator-type=v4-32', '--version=tpu-ubuntu2204-base']]
  assert dry_run(bins, 'tpu_pod.sh', 'create', *TPU, '--project=p', '--accelerator-type=v5litepod-16',
                 '--version=v2-alpha-tpuv5-lite', '--spot') == [
      [*gcloud, 'create', 'fn2en', *where, '--project=p', '--accelerator-type=v5litepod-16',
       '--version=v2-alpha-tpuv5-lite', '--spot']]
  assert dry_run(bins, 'tpu_pod.sh', 'delete', *TPU) == [[*gcloud, 'delete', 'fn2en', *where]]
  assert dry_run(bins, 'tpu_pod.sh', 'delete', *TPU, '--quiet') == [[*gcloud, 'delete', 'fn2en', *where, '--quiet']]
  [logs] = dry_run(bins, 'tpu_pod.sh', 'logs', *TPU, '--lines=20', '--follow')
  assert logs[:-1] == [*gcloud, 'ssh', 'fn2en', *where, '--worker=all']
  assert shlex.split(option(logs, '--command'))[:4] == ['tail', '-n', '20', '-F']
  [logs] = dry_run(bins, 'tpu_pod.sh', 'logs', *TPU, '--worker=0')
  assert logs[:-1] == [*gcloud, 'ssh', 'fn2en', *where, '--worker=0']
  assert shlex.split(option(logs, '--command'))[:3] == ['tail', '-n', '100']


def test_tpu_run_and_resume_dry_run(bins):
  args = (*TPU, '--workdir=gs://bucket/runs/sfew', *RUN_ARGS)
  git, scp, setup, start = dry_run(bins, 'tpu_pod.sh', 'run', *args)
  archive = str(bins['tmp'] / 'fn2en_jax.tar.gz')
  assert git == ['git', '-C', REPO, 'archive', '--format=tar.gz', f'--output={archive}', 'HEAD']
  assert scp == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', archive, 'fn2en:fn2en_jax.tar.gz',
                 '--zone=us-central2-b', '--worker=all']
  for ssh in (setup, start):
    assert ssh[:8] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'fn2en', '--zone=us-central2-b', '--worker=all']
  # The training command, in braces after a trap, ended by `;` (the last word of this override list is --verbose).
  assert contains(shlex.split(option(start, '--command')),
                  ['{', 'trap', ':', 'TERM;', 'env', ENV, *train('--distributed', workdir='gs://bucket/runs/sfew')[:-1], '--verbose;'])
  # resume = delete, create, run, with the options of each.
  assert dry_run(bins, 'tpu_pod.sh', 'resume', '--quiet', '--spot', *args) == [
      *dry_run(bins, 'tpu_pod.sh', 'delete', *TPU, '--quiet'), *dry_run(bins, 'tpu_pod.sh', 'create', *TPU, '--spot'),
      git, scp, setup, start]


def test_tpu_run_on_a_worker(bins, tmp_path):
  """`run` runs what its dry run printed; then the worker side, by bash in a stand-in home: the run starts detached
  in its own process group, in the checkout, with the venv's python; `logs` shows its log; a second run is refused."""
  args = (*TPU, '--workdir=gs://bucket/runs/sfew', *RUN_ARGS)
  printed = dry_run(bins, 'tpu_pod.sh', 'run', *args)
  done = launch(bins, 'tpu_pod.sh', 'run', *args, path=bins['fakes'])
  assert done.returncode == 0, done.stderr
  assert [c['argv'] for c in recorded(bins)] == printed
  os.remove(bins['record'])

  home = tmp_path / 'worker'
  (home / 'fn2en_jax').mkdir(parents=True)
  (home / 'fn2en_venv' / 'bin').mkdir(parents=True)
  (home / 'fn2en_venv' / 'bin' / 'activate').write_text(f'PATH={bins["fakes"]}:$PATH\n')
  worker_env = {'PATH': '/usr/bin:/bin', 'HOME': str(home), 'FAKE_RECORD': bins['record'], 'FAKE_SLEEP': '60'}

  def on_worker(ssh):
    return subprocess.run([BASH, '-c', option(ssh, '--command')], env=worker_env, capture_output=True, text=True,
                          timeout=60)

  def wait_for(condition):
    deadline = time.time() + 30
    while not condition() and time.time() < deadline:
      time.sleep(0.1)
    assert condition()

  setup, start = printed[2:]
  assert on_worker(start).returncode == 0  # returns at once; the run goes on
  wait_for(lambda: recorded(bins))
  [call] = recorded(bins)
  assert call['argv'] == train('--distributed', workdir='gs://bucket/runs/sfew')
  assert call['env']['A'] == 'x y'
  assert call['cwd'] == str(home / 'fn2en_jax')
  group = int((home / 'fn2en_jax.pid').read_text())
  assert os.getpgid(group) == group  # a process group of its own
  log = home / 'fn2en_jax.log'
  os.killpg(group, signal.SIGHUP)  # the ssh session ending does not stop it
  time.sleep(0.5)
  os.killpg(group, 0)
  assert log.read_text() == ''
  os.killpg(group, signal.SIGTERM)  # the remedy the refusal below names; the run logs its exit code
  wait_for(lambda: 'exited' in log.read_text())
  assert log.read_text() == 'fn2en_jax exited with code 6\n'

  [logs] = dry_run(bins, 'tpu_pod.sh', 'logs', *TPU)
  shown = on_worker(logs)
  hostname = subprocess.run(['hostname'], capture_output=True, text=True, check=True).stdout.strip()
  assert shown.stdout == f'[{hostname}] fn2en_jax exited with code 6\n'

  # A run still going on the worker (a live process group named by the pid file): setup stops before touching it.
  running = subprocess.Popen(['sleep', '60'], start_new_session=True)
  try:
    (home / 'fn2en_jax.pid').write_text(f'{running.pid}\n')
    (home / 'fn2en_jax' / 'keep').write_text('')
    refused = on_worker(setup)
    assert refused.returncode == 1
    assert refused.stderr == (f'fn2en_jax runs on {hostname} (process group {running.pid}); stop it: '
                              f'kill -TERM -- -{running.pid}\n')
    assert (home / 'fn2en_jax' / 'keep').exists()
  finally:
    running.kill()
    running.wait()


def _one_line_error(done, script, *needles, code):
  assert done.returncode == code, (done.returncode, done.stderr)
  assert done.stdout == ''
  assert done.stderr.startswith(f'{script}: error: ') and done.stderr.count('\n') == 1, done.stderr
  for needle in needles:
    assert needle in done.stderr


@pytest.mark.parametrize('script,args,tools,missing', [
    ('gpu.sh', ('--workdir=/r', *RUN_ARGS), (), 'python'),
    ('gpu_multinode.sh', ('--workdir=/r', *RUN_ARGS), (), 'sbatch'),
    ('gpu_multinode.sh', ('--workdir=/r', *RUN_ARGS), ('sbatch',), 'python'),
    ('gpu_multinode.sh', ('--no-submit', '--workdir=/r', *RUN_ARGS), ('python',), 'srun'),
    *[('tpu_pod.sh', (command, *TPU), (), 'gcloud') for command in ('create', 'logs', 'delete')],
    ('tpu_pod.sh', ('run', *TPU, '--workdir=gs://b/r', *RUN_ARGS), (), 'gcloud'),
    ('tpu_pod.sh', ('resume', *TPU, '--workdir=gs://b/r', *RUN_ARGS), ('gcloud',), 'git'),
])
def test_missing_tool(bins, script, args, tools, missing):
  path = bins['tmp'] / 'some'
  path.mkdir()
  for tool in tools:
    os.symlink(os.path.join(bins['fakes'], tool), path / tool)
  done = launch(bins, script, *args, path=str(path))
  _one_line_error(done, script, f'{missing} is not on PATH', '--dry-run', code=127)
  assert recorded(bins) == []  # failed before running anything


@pytest.mark.parametrize('script,args,needles', [
    ('gpu.sh', ('--workdir=/r',), ('missing --config=FILE',)),
    ('gpu.sh', ('--config=c.py',), ('missing --workdir=DIR',)),
    ('gpu.sh', ('--config', 'c.py', '--workdir=/r'), ("--config needs a value after '='",)),
    ('gpu.sh', ('--config=c.py', '--workdir=/r', '--nodes=2'), ('unknown argument --nodes=2',)),
    ('gpu.sh', ('--config=c.py', '--workdir=/r', '--env=1A=b'), ('--env=1A=b is not NAME=VALUE',)),
    ('gpu_multinode.sh', ('--config=c.py',), ('missing --workdir=DIR',)),
    ('gpu_multinode.sh', ('--config=c.py', '--workdir=/r', '--nodes=0'), ('--nodes=0 is not a positive number',)),
    ('tpu_pod.sh', (), ('missing COMMAND', 'create, run, logs, delete, resume')),
    ('tpu_pod.sh', ('start', *TPU), ("unknown command start",)),
    ('tpu_pod.sh', ('create', '--tpu=t'), ('missing --zone=ZONE',)),
    ('tpu_pod.sh', ('delete', '--zone=z'), ('missing --tpu=NAME',)),
    ('tpu_pod.sh', ('run', *TPU, '--workdir=gs://b/r'), ('missing --config=FILE',)),
    ('tpu_pod.sh', ('resume', *TPU, '--config=c.py'), ('missing --workdir=gs://BUCKET/PATH',)),
    ('tpu_pod.sh', ('run', *TPU, '--config=c.py', '--workdir=/local/runs'), ('--workdir=/local/runs is not on GCS',
                                                                             'gs://BUCKET/PATH')),
    ('tpu_pod.sh', ('logs', *TPU, '--lines=all'), ('--lines=all is not a number',)),
])
def test_bad_arguments(bins, script, args, needles):
  for dry in ((), ('--dry-run',)):  # the same error with or without a dry run, and no tool needed to report it
    _one_line_error(launch(bins, script, *args, *dry, path=bins['empty']), script, *needles, code=2)


@pytest.mark.skipif(shutil.which('shellcheck') is None, reason='shellcheck is not installed')
def test_shellcheck():
  scripts = [os.path.join(REPO, 'launch', name) for name in ('_lib.sh', *SCRIPTS)]
  done = subprocess.run(['shellcheck', '-x', *scripts], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stdout
