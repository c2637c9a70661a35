"""Faults a user meets, each stopping with one line of cause and one of remedy, the documented exit code, no
traceback, and nothing half-written left behind: bad dataset files, bad weight files, bad flags and config fields.

The command-line cases run the real `python -m ...` in a subprocess; the rest call the same functions in-process.
"""

import contextlib
import errno
import fnmatch
import json
import os
import pathlib
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import fixtures_datasets as fx
from fn2en_jax import cli, errors
from fn2en_jax.data import build

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True, timeout=900,
                        env={**os.environ, **(env or {})})


def run_clis(*commands: list[str]) -> list[subprocess.CompletedProcess]:
  """run_cli of each command, all started at once (most of such a run is importing JAX and TensorFlow)."""
  started = []
  for args in commands:
    out, err = tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')  # no pipe to fill while others run
    started.append((subprocess.Popen([sys.executable, '-m', *args], cwd=REPO, stdout=out, stderr=err, text=True),
                    out, err))
  done = []
  for proc, out, err in started:
    proc.wait(timeout=900)
    out.seek(0)
    err.seek(0)
    done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read()))
    out.close()
    err.close()
  return done


def assert_one_line(done: subprocess.CompletedProcess, code: int, cause: str, remedy: str = '') -> None:
  """The run ended with exit `code` and, as its last two lines of stderr, `error: <cause>...` and `remedy: <remedy>...`
  (`cause` and `remedy` are regular expressions matching the start of each line)."""
  assert done.returncode == code, done.stderr[-3000:]
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  last = done.stderr.rstrip('\n').split('\n')[-2:]
  assert re.match(f'error: {cause}', last[0]), last
  assert re.match(f'remedy: {remedy}', last[1]), last


def _build(name: str, manual_dir: pathlib.Path, data_dir: pathlib.Path) -> tfds.core.DatasetBuilder:
  return build.get_builder(name, data_dir=str(data_dir), manual_dir=str(manual_dir))


# --- data.build -------------------------------------------------------------------------------------------------

def test_build_cli_with_a_file_that_is_not_an_image_leaves_data_dir_as_it_was(tmp_path):
  fx.write_ck_plus_48(tmp_path / 'manual', np.random.default_rng(0))
  bad = tmp_path / 'manual' / 'CK+48' / 'happy' / 'S010_006_00000014.png'
  bad.write_text('this is a text file saved as .png')
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  done = run_cli('fn2en_jax.data.build', 'ck_plus_48', f'--manual_dir={tmp_path / "manual"}',
                 f'--data_dir={data_dir}')
  assert_one_line(done, errors.INPUT, re.escape(f'{bad}: cannot decode the image (') + '.*expected a PNG or JPEG file.',
                  'replace the file with the one the dataset ships')
  assert list(data_dir.iterdir()) == []  # no dataset folder, no downloads/


def test_build_cli_unknown_config_exits_with_the_config_code_and_verbose_shows_the_traceback(tmp_path):
  done = run_cli('fn2en_jax.data.build', 'ck_plus/7class', f'--data_dir={tmp_path / "data"}',
                 env={'FN2EN_VERBOSE': '1'})
  assert done.returncode == errors.CONFIG
  assert 'Traceback' in done.stderr and 'raise errors.ConfigError' in done.stderr
  assert done.stderr.rstrip('\n').split('\n')[-2:] == [
      "error: ck_plus has no config '7class'", "remedy: pick one of ['8class', '6class']: ck_plus/8class"]
  assert not (tmp_path / 'data').exists()


@pytest.fixture
def ck48(tmp_path):
  """A CK+48 tree and an empty data_dir; after the test, data_dir must still be empty."""
  manual, data_dir = tmp_path / 'manual', tmp_path / 'data'
  expected = fx.write_ck_plus_48(manual, np.random.default_rng(1))
  data_dir.mkdir()
  yield manual, data_dir, expected
  assert list(data_dir.iterdir()) == []


def test_unreadable_image_names_the_file(ck48):
  manual, data_dir, _ = ck48
  bad = manual / 'CK+48' / 'anger' / 'S005_001_00000009.png'
  bad.unlink()
  bad.symlink_to(manual / 'gone.png')  # listed in its folder, but opening it fails
  with pytest.raises(errors.InputError, match=re.escape(f'{bad}: cannot decode the image')) as info:
    _build('ck_plus_48', manual, data_dir)
  assert info.value.exit_code == errors.INPUT and info.value.remedy.startswith('replace the file')


def test_label_outside_the_class_list(ck48):
  manual, data_dir, _ = ck48
  (manual / 'CK+48' / 'anger').rename(manual / 'CK+48' / 'angry')
  with pytest.raises(errors.InputError, match=re.escape(f"{manual / 'CK+48' / 'angry'}: unexpected folder; "
                                                        "expected class folders named ['anger'")) as info:
    _build('ck_plus_48', manual, data_dir)
  assert 'rename it' in info.value.remedy


def test_empty_class_folder(ck48):
  manual, data_dir, _ = ck48
  for path in (manual / 'CK+48' / 'happy').iterdir():
    path.unlink()
  with pytest.raises(errors.InputError, match=re.escape(f"{manual / 'CK+48' / 'happy'}: empty class folder")):
    _build('ck_plus_48', manual, data_dir)


def test_subject_in_two_parts_of_an_official_fold(tmp_path):
  folds = fx.TFD_FOLDS.copy()
  folds[2, 3] = 3  # row 2 is subject 12, whose other face (row 0) is in the valid part of fold 3
  assert fx.TFD_LABS_ID[0] == fx.TFD_LABS_ID[2] and folds[0, 3] == 2
  fx.write_tfd(tmp_path / 'manual', 48, np.random.default_rng(2), folds=folds)
  (tmp_path / 'data').mkdir()
  with pytest.raises(errors.InputError, match=r'TFD_48x48.mat: subject 12 \(labs_id\) is in valid and test of '
                                              r'official fold 3; expected each subject in one part of each fold'):
    _build('tfd/48x48', tmp_path / 'manual', tmp_path / 'data')
  assert list((tmp_path / 'data').iterdir()) == []


def test_grey_and_palette_images_are_converted_to_rgb(tmp_path):
  expected = fx.write_ck_plus_48(tmp_path / 'manual', np.random.default_rng(3))
  sources = {}
  for i, (folder, stem) in enumerate(fx.CK48_FILES):
    path = tmp_path / 'manual' / 'CK+48' / folder / f'{stem}.png'
    grey = np.asarray(Image.open(path))
    assert grey.ndim == 2  # the fixture writes grey PNGs
    if i == 0:  # and one palette PNG, whose palette maps each index to a grey level
      palette = Image.fromarray(grey).convert('P')
      palette.save(path)
      grey = np.asarray(palette.convert('L'))
    sources[stem] = grey
  builder = _build('ck_plus_48', tmp_path / 'manual', tmp_path / 'data')
  source = builder.as_data_source()['train']
  assert len(source) == len(expected)
  for i in range(len(source)):
    example = source[i]
    stem = f"{example['sequence'].decode()}_{example['frame']:08d}"
    np.testing.assert_array_equal(example['image'], np.repeat(sources[stem][..., None], 3, axis=-1))


# --- convert, features ------------------------------------------------------------------------------------------

class _RunsCode:
  """Pickles as a call of os.system: loading it with plain pickle would run the command."""

  def __init__(self, marker: pathlib.Path):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def test_convert_refuses_a_pth_holding_pickled_code_in_one_line(tmp_path):
  torch = pytest.importorskip('torch')
  marker, pth, output = tmp_path / 'ran', tmp_path / 'vgg_face_dag.pth', tmp_path / 'net'
  torch.save({'conv1_1.weight': torch.zeros(4, 3, 3, 3), 'conv1_1.bias': _RunsCode(marker)}, pth)
  with zipfile.ZipFile(pth) as archive:  # the call is really in there, as a global torch will not import
    assert any(b'system' in archive.read(name) for name in archive.namelist() if name.endswith('.pkl'))
  done = run_cli('fn2en_jax.convert', 'vgg_face', f'--input={pth}', f'--output={output}')
  assert_one_line(done, errors.INPUT,
                  re.escape(f'{pth}: the file holds Python objects other than tensors, which are not loaded'),
                  re.escape('use a .pth that holds only a state dict of tensors'))
  assert not marker.exists() and not output.exists()


def test_convert_missing_or_damaged_files(tmp_path):
  torch = pytest.importorskip('torch')
  from fn2en_jax import convert  # pylint: disable=import-outside-toplevel
  output = tmp_path / 'net'
  with pytest.raises(errors.MissingInput, match=re.escape(f'{tmp_path / "none.pth"}: file not found; expected '
                                                          'VGG-Face weights')):
    convert.convert_vgg_face(str(tmp_path / 'none.pth'), str(output))
  torch.save({'conv1_1.weight': torch.zeros(64, 3, 3, 3)}, tmp_path / 'full.pth')
  data = (tmp_path / 'full.pth').read_bytes()
  (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])  # a download that stopped half-way
  with pytest.raises(errors.InputError, match=re.escape(f'{tmp_path / "cut.pth"}: not a readable PyTorch file')):
    convert.convert_vgg_face(str(tmp_path / 'cut.pth'), str(output))
  (tmp_path / 'net.dat').write_bytes(b'\x01\x01' + b'\x00' * 10)
  with pytest.raises(errors.InputError, match=re.escape(f'{tmp_path / "net.dat"}: not a dlib face-recognition net')):
    convert.convert_dlib_resnet(str(tmp_path / 'net.dat'), str(output))
  with pytest.raises(errors.MissingInput, match=re.escape(f'{tmp_path / "none.dat"}: file not found')):
    convert.convert_dlib_resnet(str(tmp_path / 'none.dat'), str(output))
  assert not output.exists()


def test_features_names_the_file_that_is_not_an_image(tmp_path):
  from fn2en_jax.commands import features  # pylint: disable=import-outside-toplevel
  good, bad = tmp_path / 'face.png', tmp_path / 'notes.png'
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
  bad.write_text('not an image')
  with pytest.raises(errors.InputError, match=re.escape(f'{bad}: cannot decode the image')):
    features.load_images([str(good), str(bad)], 16)
  with pytest.raises(errors.MissingInput, match=re.escape(f'{tmp_path / "gone.png"}: file not found')):
    features.load_images([str(tmp_path / 'gone.png')], 16)
  assert features.load_images([str(good)], 16).shape == (1, 16, 16, 3)


# --- main: the config rows, the workdir, divergence, real kills -----------------------------------------

def run_main(workdir, *overrides: str, config: str = 'tests/tiny_config.py') -> subprocess.CompletedProcess:
  return run_cli('fn2en_jax.main', f'--config={config}', f'--workdir={workdir}', *overrides)


def test_config_mistakes_stop_before_any_work_in_one_line(tmp_path):
  work = tmp_path / 'work'
  main = ['fn2en_jax.main', f'--workdir={work}']
  misnamed, unknown_stage, no_face_net = run_clis([*main, '--config=tests/tiny_config.py', '--config.stage_a.lr=0.1'],
                                                  [*main, '--config=tests/tiny_config.py',
                                                   "--config.stages=('face','aa')"],
                                                  [*main, '--config=configs/sfew.py'])
  assert_one_line(misnamed, errors.CONFIG, re.escape('config field stage_a.lr does not exist'),
                  re.escape('did you mean stage_a.learning_rate?'))
  assert_one_line(unknown_stage, errors.CONFIG, re.escape("config.stages: unknown stage(s) ['aa']"))
  assert_one_line(no_face_net, errors.CONFIG, re.escape('config.teacher.init: '))
  assert not work.exists()


KILL_STEPS = 8  # steps of stages a and b in the kill test, a checkpoint after each


def _kill_overrides(data_dir, face_net) -> list[str]:
  out = [f'--config.data_dir={data_dir}', "--config.stages=('face','a','b')", f'--config.teacher.init={face_net}']
  for name in ('a', 'b'):
    out += [f'--config.stage_{name}.num_steps={KILL_STEPS}', f'--config.stage_{name}.checkpoint_every=1',
            f'--config.stage_{name}.log_every=4', f'--config.stage_{name}.eval_every={KILL_STEPS}']
  return out


def _save_random_face_net(init: pathlib.Path) -> None:
  """The tiny config's teacher (VGG-Face at width 1/16) with NumPy-drawn weights, written as a converted one."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from fn2en_jax.models import face_nets  # pylint: disable=import-outside-toplevel
  kwargs = dict(width=1 / 16, fc_dim=256, input_mean=(129.19, 104.76, 93.59), input_std=1.0)
  module = face_nets.MODELS['vgg_face'](num_classes=1, **kwargs)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  rng = np.random.default_rng(0)
  params = {name: jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), layer)
            for name, layer in shapes['params'].items() if name != 'fc8'}
  face_nets.save(str(init), 'vgg_face', kwargs, params, input_size=32)


def _steps_and_tmp(stage_dir: pathlib.Path) -> tuple[list[int], list[str]]:
  try:
    names = os.listdir(stage_dir)
  except FileNotFoundError:
    return [], []
  return sorted(int(n) for n in names if n.isdigit()), [n for n in names if 'tmp' in n]


def _kill_when(cmd: list[str], log: pathlib.Path, stage_dir: pathlib.Path, after: int, writing: bool) -> None:
  """Starts `cmd` and SIGKILLs it once stage_dir holds a finished checkpoint of step >= `after` and, if `writing`,
  while a checkpoint is being written (Orbax's temporary folder is there), else while none is."""
  with log.open('w') as out:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
  try:
    while proc.poll() is None:
      steps, tmp = _steps_and_tmp(stage_dir)
      if steps and steps[-1] >= after and bool(tmp) == writing:
        proc.kill()
        break
      time.sleep(0.002)
  finally:
    proc.kill()
    proc.wait()
  assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def _final_state(stage_dir: pathlib.Path) -> dict:
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from fn2en_jax.train import checkpoint  # pylint: disable=import-outside-toplevel
  with ocp.PyTreeCheckpointer() as ckpt:
    return ckpt.restore(checkpoint.latest_state_path(str(stage_dir)))


@pytest.mark.slow
def test_sigkill_in_stages_a_and_b_even_mid_checkpoint_then_rerun_equals_an_uninterrupted_run(tmp_path):
  import tiny_config  # pylint: disable=import-outside-toplevel
  from fn2en_jax import experiment  # pylint: disable=import-outside-toplevel
  _save_random_face_net(tmp_path / 'face_net')
  overrides = _kill_overrides(tmp_path / 'tfds', tmp_path / 'face_net')
  # The dataset and the face stage (stage a's teacher) are made here, once, in this process; both workdirs start
  # with that face stage, finished (so skipped), and the uninterrupted run and the killed ones, which run at the
  # same time, only read the dataset.
  config = tiny_config.get_config()
  config.update(dict(data_dir=str(tmp_path / 'tfds'), stages=('face',)))
  config.teacher.init = str(tmp_path / 'face_net')
  experiment.run(config, str(tmp_path / 'teacher'))
  for workdir in ('straight', 'killed'):
    shutil.copytree(tmp_path / 'teacher' / 'face', tmp_path / workdir / 'face')
  main = [sys.executable, '-m', 'fn2en_jax.main', '--config=tests/tiny_config.py']
  with (tmp_path / 'straight.log').open('w') as out:
    uninterrupted = subprocess.Popen([*main, f'--workdir={tmp_path / "straight"}', *overrides], cwd=REPO, stdout=out,
                                     stderr=subprocess.STDOUT)
  try:
    work = tmp_path / 'killed'
    cmd = [*main, f'--workdir={work}', *overrides]
    interrupted_writes = {}
    for stage in ('a', 'b'):
      stage_dir = work / stage
      # Killed while a checkpoint is written (tried again if the write finished between the look and the kill) ...
      for attempt in range(3):
        first = _steps_and_tmp(stage_dir)[0]
        _kill_when(cmd, tmp_path / f'{stage}_write_{attempt}.log', stage_dir, after=(first[-1] if first else 0) + 1,
                   writing=True)
        if _steps_and_tmp(stage_dir)[1]:  # the half-written checkpoint is still there
          interrupted_writes[stage] = attempt + 1
          break
      # ... and between two checkpoints, further on.
      steps = _steps_and_tmp(stage_dir)[0]
      assert steps and steps[-1] < KILL_STEPS
      _kill_when(cmd, tmp_path / f'{stage}_between.log', stage_dir, after=steps[-1] + 2, writing=False)
      assert _steps_and_tmp(stage_dir)[0][-1] < KILL_STEPS  # killed mid-stage, not after it
    assert set(interrupted_writes) == {'a', 'b'}, interrupted_writes

    done = run_main(work, *overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    assert uninterrupted.wait(timeout=900) == 0, (tmp_path / 'straight.log').read_text()[-3000:]
  finally:
    uninterrupted.kill()  # if the test failed before its end
    uninterrupted.wait()
  for stage in ('a', 'b'):
    straight, resumed = _final_state(tmp_path / 'straight' / stage), _final_state(work / stage)
    assert int(resumed['step']) == int(straight['step']) == KILL_STEPS
    for part in ('params', 'opt_state'):
      assert jax.tree.leaves(straight[part]), part
      jax.tree.map(np.testing.assert_array_equal, resumed[part], straight[part])  # also fails on another structure


def test_divergence_stops_at_the_bad_step_names_the_last_good_checkpoint_and_saves_nothing_after(tmp_path, tiny_run):
  import tiny_config  # pylint: disable=import-outside-toplevel
  from fn2en_jax import experiment  # pylint: disable=import-outside-toplevel
  config = tiny_config.get_config()
  config.data_dir = str(tiny_run[1])  # the tiny run's dataset, read only (made by then: this file's first test is long)
  config.stages = ('scratch',)
  # A checkpoint after every step but a loss check (logging) only every 3rd: the check before each save is what
  # must keep a diverged state out of the checkpoints.
  config.stage_scratch.update(dict(optimizer='sgd', learning_rate=1e30, warmup_steps=0, schedule='constant',
                                   num_steps=6, checkpoint_every=1, log_every=3, eval_every=6))
  with pytest.raises(errors.Diverged) as info:
    experiment.run(config, str(tmp_path / 'work'))
  match = re.match(r'scratch: training diverged at step (\d+) \(.*(nan|inf).*\); the last good checkpoint is step '
                   r'(\d+) in (\S+)$', info.value.cause)
  assert match, info.value.cause
  bad, last, stage_dir = int(match[1]), int(match[3]), match[4]
  assert stage_dir == str(tmp_path / 'work' / 'scratch')
  assert info.value.exit_code == errors.DIVERGED
  assert info.value.remedy.startswith('lower --config.stage_scratch.learning_rate (now 1e+30)')
  steps, tmp = _steps_and_tmp(tmp_path / 'work' / 'scratch')
  assert steps and max(steps) == last == bad - 1 and not tmp  # every step before the bad one saved, none after
  saved = _final_state(tmp_path / 'work' / 'scratch')
  assert int(saved['step']) == last
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(saved['params']))


# --- the workdir ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _tmpfs(path: pathlib.Path, *options: str):
  """A tiny tmpfs mounted at `path` (needs root and mount(8)); skips the test where it cannot be mounted."""
  path.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', ','.join(('size=1m', *options)), 'tmpfs', str(path)],
                           capture_output=True, check=False).returncode == 0
  if not mounted:
    pytest.skip('cannot mount a tmpfs here (needs root)')
  try:
    yield path
  finally:
    subprocess.run(['umount', str(path)], check=True)


@contextlib.contextmanager
def _read_only_dir(path: pathlib.Path):
  """A directory this process cannot write to: chmod 555 for a normal user; root, whom permissions do not stop,
  gets a read-only tmpfs."""
  if os.geteuid() == 0:
    with _tmpfs(path, 'ro') as mounted:
      yield mounted
  else:
    path.mkdir()
    path.chmod(0o555)
    try:
      yield path
    finally:
      path.chmod(0o755)


def test_unwritable_workdir_stops_before_training_with_the_workdir_code(tmp_path):
  from fn2en_jax import workdir  # pylint: disable=import-outside-toplevel
  with _read_only_dir(tmp_path / 'ro') as ro:
    with pytest.raises(errors.WorkdirError, match=re.escape(f'--workdir={ro / "work"}: cannot write there')):
      workdir.check_writable(str(ro / 'work'), 0.0)
    done = run_main(ro / 'work', f'--config.data_dir={tmp_path / "tfds"}')
    assert_one_line(done, errors.WORKDIR, re.escape(f'--workdir={ro / "work"}: cannot write there'),
                    re.escape('pick a directory you can write to'))
    assert os.listdir(ro) == []
  assert not (tmp_path / 'tfds').exists()  # stopped before reading any data


def test_full_disk_stops_before_training(tmp_path):
  from fn2en_jax import workdir  # pylint: disable=import-outside-toplevel
  import tiny_config  # pylint: disable=import-outside-toplevel
  # Everywhere: a threshold no disk meets, from the config field a user would set.
  config = tiny_config.get_config()
  config.min_free_gb = 1e9
  with pytest.raises(errors.WorkdirError, match=r'GB free on its disk, below config.min_free_gb=1e\+09') as info:
    workdir.check(str(tmp_path / 'work'), config)
  assert info.value.exit_code == errors.WORKDIR and 'lower --config.min_free_gb' in info.value.remedy
  # Where a 1 MB tmpfs can be mounted: a really small disk, with the default threshold.
  with _tmpfs(tmp_path / 'small') as small:
    assert tiny_config.get_config().min_free_gb > shutil.disk_usage(small).free / 1e9
    with pytest.raises(errors.WorkdirError, match=re.escape(f'--workdir={small / "work"}: 0.00105 GB free')):
      workdir.check(str(small / 'work'), tiny_config.get_config())


def test_a_workdir_of_another_config_refuses_to_resume_unless_allowed(tmp_path):
  from fn2en_jax import workdir  # pylint: disable=import-outside-toplevel
  import tiny_config  # pylint: disable=import-outside-toplevel
  saved = tiny_config.get_config()
  (tmp_path / 'config.json').write_text(saved.to_json_best_effort(indent=2))
  config = tiny_config.get_config()
  workdir.check_resume(str(tmp_path), config)  # the same config resumes
  # Training longer, logging, evaluating and saving at other steps, at another learning rate: resumes too.
  config.stage_a.update(dict(num_steps=40, log_every=1, eval_every=5, checkpoint_every=3, learning_rate=1e-4))
  config.data.num_threads = 4
  workdir.check_resume(str(tmp_path), config)
  # Another student and another dataset: refused, naming both fields with their old and new values.
  config.student.widths = (8, 8, 8, 8, 8)
  config.data.name = 'ck_plus_48'
  with pytest.raises(errors.WorkdirError) as info:
    workdir.check_resume(str(tmp_path), config)
  assert info.value.cause == (
      f"--workdir={tmp_path} holds a run of another config: data.name ('synth_faces' -> 'ck_plus_48'), "
      'student.widths ([4, 4, 8, 8, 8] -> [8, 8, 8, 8, 8]) changed, which changes the model or the data it was '
      'trained on')
  assert info.value.remedy == ('use a new --workdir; or, to resume anyway, add '
                               '--config.allow_changed=data.name,student.widths')
  config.allow_changed = 'data.name,student.widths'
  workdir.check_resume(str(tmp_path), config)
  # The list of fields that may change is a list of patterns a test can check against the config's fields.
  names = set(cli.config_fields(saved))
  for pattern in workdir.RESUMABLE:
    assert any(fnmatch.fnmatchcase(name, pattern) for name in names), pattern
  assert json.loads((tmp_path / 'config.json').read_text()) == workdir.as_json(saved)


def test_a_disk_that_fills_up_mid_run_is_a_workdir_error_not_a_bug(tmp_path):
  # What Orbax's TensorStore raised when a 200 KB tmpfs filled during a checkpoint (copied from a real run), and
  # what Python raises: both become the workdir's exit code, naming the file where it is known.
  tensorstore = ValueError(
      f'RESOURCE_EXHAUSTED: Error writing local file "{tmp_path}/scratch/1.orbax-checkpoint-tmp/state.orbax-checkpoint'
      f'-tmp/manifest.ocdbt": Failed writing: "{tmp_path}/x.__lock": Failed to write 116 bytes to file 9: No space '
      "left on device [os_error_code='28']")
  assert errors.disk_error(RuntimeError('the save failed')) is None
  try:
    try:
      raise tensorstore
    except ValueError as e:
      raise RuntimeError('the save failed') from e
  except RuntimeError as wrapped:
    error = errors.disk_error(wrapped)
  assert error.exit_code == errors.WORKDIR
  assert error.cause == f'{tmp_path}/scratch/1.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/manifest.ocdbt: ' \
                        'No space left on device'
  assert errors.disk_error(OSError(errno.EROFS, os.strerror(errno.EROFS), '/a')).cause == \
      '/a: Read-only file system'
  assert errors.disk_error(OSError(errno.ENOENT, os.strerror(errno.ENOENT), '/a')) is None
