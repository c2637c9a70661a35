"""The launch scripts as a user runs them, on this machine, which has no TPU slice, SLURM cluster or GPU.

Checked: --help; the --dry-run command lines (run with an empty PATH, so they need no tool); that a real run runs
exactly what the dry run printed, with stand-in gcloud, git, sbatch, srun and python on PATH that record their
arguments (the real ones would create cloud resources, are not installed, or would start a training run); the
commands a TPU worker runs, executed here by bash (with stand-ins for gcsfuse, mountpoint and sudo: a real mount
needs a bucket, and sudo would change this machine); and the one-line errors for a missing tool or argument.
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
# gs:// paths: the workdir's bucket twice (the face net is in it too) and a second bucket for the data.
GCS_ARGS = ('--workdir=gs://bucket/runs/sfew', '--config.data_dir=gs://data-b/tfds',
            '--config.teacher.init=gs://bucket/face_nets/vgg_face')

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


# The worker side of the mount, in bash (a Python stand-in would start too slowly here, ~30 calls): each records
# its words, tab-separated, a line per call. sudo runs mkdir and chown (in the test's directory) and only records
# the rest, which would change this machine; its `tee FILE` writes into FAKE_TEE/<name of FILE>, and its
# `apt-get install` puts a gcsfuse stand-in on PATH. gcsfuse needs an existing directory and adds it to the
# FAKE_MOUNTS list, which mountpoint reads.
WORKER_FAKE = r'''#!/bin/bash
name=${0##*/}
(IFS=$'\t'; printf '%s\n' "$name${*:+$'\t'}$*") >> "$FAKE_WORKER_RECORD"
touch "$FAKE_MOUNTS"
case $name in
  sudo)
    case $1 in
      mkdir | chown) exec "$@" ;;
      tee) cat > "$FAKE_TEE/${2##*/}" ;;
      apt-get) [[ $2 != install ]] || cp "$0" "$FAKE_INSTALL/gcsfuse" ;;
    esac ;;
  lsb_release) echo jammy ;;
  gcsfuse) [[ -d ${!#} ]] && ! grep -qxF -- "${!#}" "$FAKE_MOUNTS" && echo "${!#}" >> "$FAKE_MOUNTS" ;;
  mountpoint) grep -qxF -- "${!#}" "$FAKE_MOUNTS" ;;
esac
'''


def train(*flags, workdir, dtype='--config.dtype=bfloat16', overrides=()):
  """The training command the scripts must run, as argv (an independent spelling of it)."""
  return ['python', '-m', 'fn2en_jax.main', *flags, '--config=configs/sfew.py', f'--workdir={workdir}', dtype,
          *overrides, STAGES, '--verbose']


def tpu_train(root):
  """The training command of `tpu_pod.sh run` with GCS_ARGS and the buckets mounted under `root`."""
  return train('--distributed', workdir=f'{root}/bucket/runs/sfew', overrides=(
      f'--config.data_dir={root}/data-b/tfds', f'--config.teacher.init={root}/bucket/face_nets/vgg_face'))


def first_mount(root):
  """What the worker runs to mount both buckets under `root` where neither is mounted (gcsfuse installed)."""
  calls = []
  for bucket in ('bucket', 'data-b'):
    calls += [['mountpoint', '-q', f'{root}/{bucket}'], ['sudo', 'mkdir', '-p', f'{root}/{bucket}'],
              ['sudo', 'chown', f'{os.getuid()}:{os.getgid()}', f'{root}/{bucket}'],
              ['gcsfuse', '--implicit-dirs', '--rename-dir-limit=100000', bucket, f'{root}/{bucket}']]
  return calls


@pytest.fixture
def bins(tmp_path):
  """Directories for PATH: 'empty', 'fakes' with recording stand-ins for every tool (plus the real `env`), and
  'worker' with those a TPU worker's mount step runs ('gcsfuse' holds the stand-in gcsfuse alone)."""
  dirs = {name: tmp_path / name for name in ('empty', 'fakes', 'worker', 'gcsfuse')}
  for path in dirs.values():
    path.mkdir()
  fake = FAKE.format(python=sys.executable)
  tools = [('fakes', tool, fake) for tool in ('gcloud', 'git', 'sbatch', 'srun', 'python')]
  tools += [('worker', tool, WORKER_FAKE) for tool in ('sudo', 'mountpoint', 'lsb_release', 'curl')]
  for place, tool, text in [*tools, ('gcsfuse', 'gcsfuse', WORKER_FAKE)]:
    (dirs[place] / tool).write_text(text)
    (dirs[place] / tool).chmod(0o755)
  os.symlink(shutil.which('env'), dirs['fakes'] / 'env')
  (tmp_path / 'tee').mkdir()
  return {**{name: str(path) for name, path in dirs.items()}, 'record': str(tmp_path / 'record.jsonl'),
          'worker_record': str(tmp_path / 'worker.tsv'), 'tmp': tmp_path}


def worker_env(bins, home):
  """The environment of a TPU worker's commands: the mount stand-ins first on PATH, then the system's tools."""
  return {'PATH': f'{bins["worker"]}:{bins["gcsfuse"]}:/usr/bin:/bin', 'HOME': str(home),
          'FAKE_RECORD': bins['record'], 'FAKE_WORKER_RECORD': bins['worker_record'],
          'FAKE_MOUNTS': str(bins['tmp'] / 'mounts'), 'FAKE_TEE': str(bins['tmp'] / 'tee'),
          'FAKE_INSTALL': bins['gcsfuse']}


def worker_calls(bins):
  """The argv of every call of a mount stand-in since the last call of this, in order."""
  if not os.path.exists(bins['worker_record']):
    return []
  with open(bins['worker_record']) as f:
    calls = [line.rstrip('\n').split('\t') for line in f]
  os.remove(bins['worker_record'])
  return calls


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
  done = launch(bins, 'gpu_multinode.sh', '--no-submit', *args, path=bins['fakes'], FAKE_EXIT='134')
  assert done.returncode == 134  # a host ended by JAX after a peer died: its exit status reaches the caller
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
  args = (*TPU, *GCS_ARGS, *RUN_ARGS)
  git, scp, setup, mount, start = dry_run(bins, 'tpu_pod.sh', 'run', *args)
  archive = str(bins['tmp'] / 'fn2en_jax.tar.gz')
  assert git == ['git', '-C', REPO, 'archive', '--format=tar.gz', f'--output={archive}', 'HEAD']
  assert scp == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', archive, 'fn2en:fn2en_jax.tar.gz',
                 '--zone=us-central2-b', '--worker=all']
  for ssh in (setup, mount, start):
    assert ssh[:8] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'fn2en', '--zone=us-central2-b', '--worker=all']
  # Each bucket mounted once, at /mnt/gcs/<bucket>, where it is not mounted yet (the words between `;`).
  mount_words = shlex.split(option(mount, '--command'))
  for bucket in ('bucket', 'data-b'):
    assert contains(mount_words, ['if', '!', 'mountpoint', '-q', f'/mnt/gcs/{bucket};', 'then'])
    assert contains(mount_words, ['gcsfuse', '--implicit-dirs', '--rename-dir-limit=100000', bucket,
                                  f'/mnt/gcs/{bucket};'])
  assert mount_words.count('--implicit-dirs') == 2  # one gcsfuse per bucket
  # The training command, in braces after a trap, ended by `;` (the last word of this override list is --verbose),
  # with every gs:// path as its path under /mnt/gcs; nothing of gs:// is left.
  start_words = shlex.split(option(start, '--command'))
  assert contains(start_words, ['{', 'trap', ':', 'TERM;', 'env', ENV, *tpu_train('/mnt/gcs')[:-1], '--verbose;'])
  assert 'gs://' not in option(start, '--command')
  assert contains(start_words, ['mountpoint', '-q', '/mnt/gcs/data-b', '||'])
  # resume = delete, create, run, with the options of each.
  assert dry_run(bins, 'tpu_pod.sh', 'resume', '--quiet', '--spot', *args) == [
      *dry_run(bins, 'tpu_pod.sh', 'delete', *TPU, '--quiet'), *dry_run(bins, 'tpu_pod.sh', 'create', *TPU, '--spot'),
      git, scp, setup, mount, start]


def test_tpu_run_on_a_worker(bins, tmp_path):
  """`run` runs what its dry run printed; then the worker side, by bash in a stand-in home: no run starts before
  the buckets are mounted; the mount step mounts each once, and again leaves them as they are; the run starts
  detached in its own process group, in the checkout, with the venv's python and the mounted paths; `logs` shows
  its log; a second run is refused."""
  root = str(tmp_path / 'mnt' / 'gcs')
  args = (*TPU, *GCS_ARGS, f'--mount-root={root}', *RUN_ARGS)
  printed = dry_run(bins, 'tpu_pod.sh', 'run', *args)
  done = launch(bins, 'tpu_pod.sh', 'run', *args, path=bins['fakes'])
  assert done.returncode == 0, done.stderr
  assert [c['argv'] for c in recorded(bins)] == printed
  os.remove(bins['record'])

  home = tmp_path / 'worker'
  (home / 'fn2en_jax').mkdir(parents=True)
  (home / 'fn2en_venv' / 'bin').mkdir(parents=True)
  (home / 'fn2en_venv' / 'bin' / 'activate').write_text(f'PATH={bins["fakes"]}:$PATH\n')
  env = {**worker_env(bins, home), 'FAKE_SLEEP': '60'}
  hostname = subprocess.run(['hostname'], capture_output=True, text=True, check=True).stdout.strip()

  def on_worker(ssh):
    return subprocess.run([BASH, '-c', option(ssh, '--command')], env=env, capture_output=True, text=True,
                          timeout=60)

  def wait_for(condition):
    deadline = time.time() + 30
    while not condition() and time.time() < deadline:
      time.sleep(0.1)
    assert condition()

  setup, mount, start = printed[2:]
  refused = on_worker(start)
  assert (refused.returncode, refused.stderr) == (1, f'{root}/bucket is not mounted on {hostname}\n')
  assert worker_calls(bins) == [['mountpoint', '-q', f'{root}/bucket']]
  assert recorded(bins) == []  # no python
  for calls in (first_mount(root), [['mountpoint', '-q', f'{root}/{bucket}'] for bucket in ('bucket', 'data-b')]):
    assert on_worker(mount).returncode == 0
    assert worker_calls(bins) == calls
  assert (bins['tmp'] / 'mounts').read_text().split() == [f'{root}/bucket', f'{root}/data-b']

  assert on_worker(start).returncode == 0  # returns at once; the run goes on
  wait_for(lambda: recorded(bins))
  [call] = recorded(bins)
  assert call['argv'] == tpu_train(root)
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


def test_tpu_mount_installs_gcsfuse(bins, tmp_path):
  """Where gcsfuse is missing, the mount step adds Google's apt repository for the release and its key, installs
  gcsfuse with apt-get, then mounts every bucket."""
  root = str(tmp_path / 'gcs')
  mount = dry_run(bins, 'tpu_pod.sh', 'run', *TPU, *GCS_ARGS, f'--mount-root={root}', *RUN_ARGS)[3]
  os.remove(os.path.join(bins['gcsfuse'], 'gcsfuse'))
  done = subprocess.run([BASH, '-c', option(mount, '--command')], env=worker_env(bins, tmp_path),
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stderr
  calls = worker_calls(bins)
  # Each `a | sudo tee FILE` pipe: both calls, in either order; then apt-get, then the mounts.
  assert sorted(calls[:4]) == sorted([
      ['lsb_release', '-c', '-s'], ['sudo', 'tee', '/etc/apt/sources.list.d/gcsfuse.list'],
      ['curl', '-fsSL', 'https://packages.cloud.google.com/apt/doc/apt-key.gpg'],
      ['sudo', 'tee', '/usr/share/keyrings/cloud.google.asc']])
  tees = {p.name: p.read_text() for p in (bins['tmp'] / 'tee').iterdir()}
  assert tees == {'gcsfuse.list': 'deb [signed-by=/usr/share/keyrings/cloud.google.asc] '
                                  'https://packages.cloud.google.com/apt gcsfuse-jammy main\n',
                  'cloud.google.asc': ''}  # what the stand-in curl printed
  assert calls[4:] == [['sudo', 'apt-get', 'update', '-qq'], ['sudo', 'apt-get', 'install', '-y', '-qq', 'gcsfuse'],
                       *first_mount(root)]


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
    ('tpu_pod.sh', ('run', *TPU, '--config=c.py', '--workdir=gs://Runs/x'), ('--workdir=gs://Runs/x does not name a '
                                                                             'bucket', 'gs://BUCKET/PATH')),
    ('tpu_pod.sh', ('run', *TPU, '--config=c.py', '--workdir=gs://b/r', '--config.data_dir=gs://'),
     ('--config.data_dir=gs:// does not name a bucket', '--config.data_dir=gs://BUCKET/PATH')),
    ('tpu_pod.sh', ('resume', *TPU, '--config=c.py', '--workdir=gs://b/r', '--mount-root=gcs'),
     ('--mount-root=gcs is not an absolute path',)),
])
def test_bad_arguments(bins, script, args, needles):
  for dry in ((), ('--dry-run',)):  # the same error with or without a dry run, and no tool needed to report it
    _one_line_error(launch(bins, script, *args, *dry, path=bins['empty']), script, *needles, code=2)


@pytest.mark.skipif(shutil.which('shellcheck') is None, reason='shellcheck is not installed')
def test_shellcheck():
  scripts = [os.path.join(REPO, 'launch', name) for name in ('_lib.sh', *SCRIPTS)]
  done = subprocess.run(['shellcheck', '-x', *scripts], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stdout
