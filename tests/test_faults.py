"""Faults a user meets, each stopping with one line of cause and one of remedy, the documented exit code, no
traceback, and nothing half-written left behind: bad dataset files, bad weight files, bad flags and config fields.

The command-line cases run the real `python -m ...` in a subprocess; the rest call the same functions in-process.
"""

import os
import pathlib
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import fixtures_datasets as fx
from fn2en_jax import errors
from fn2en_jax.data import build

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, **(env or {})})


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
  from fn2en_jax import features  # pylint: disable=import-outside-toplevel
  good, bad = tmp_path / 'face.png', tmp_path / 'notes.png'
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
  bad.write_text('not an image')
  with pytest.raises(errors.InputError, match=re.escape(f'{bad}: cannot decode the image')):
    features.load_images([str(good), str(bad)], 16)
  with pytest.raises(errors.MissingInput, match=re.escape(f'{tmp_path / "gone.png"}: file not found')):
    features.load_images([str(tmp_path / 'gone.png')], 16)
  assert features.load_images([str(good)], 16).shape == (1, 16, 16, 3)
