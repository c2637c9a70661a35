"""Every real-dataset builder, built from a fixture tree in the distributed layout: exact counts, labels, subjects;
clear errors for wrong or malformed data; nothing left behind by a failed build; building twice is a no-op."""

import pathlib
import re
import shutil

from absl import flags
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import fixtures_datasets as fx
from fn2en_jax import errors
from fn2en_jax.data import build
from fn2en_jax.data import faces
from fn2en_jax.data.builders import _common


def _build(name: str, manual_dir: pathlib.Path, data_dir: pathlib.Path) -> tfds.core.DatasetBuilder:
  return build.get_builder(name, data_dir=str(data_dir), manual_dir=str(manual_dir))


def _examples(builder: tfds.core.DatasetBuilder, split: str = 'train') -> list[dict]:
  source = builder.as_data_source()[split]
  names = builder.info.features['label'].names
  out = []
  for i in range(len(source)):
    example = dict(source[i])
    example['label'] = names[example['label']]
    out.append({k: v.decode() if isinstance(v, bytes) else v for k, v in example.items()})
  return out


def _rows(examples: list[dict], *fields: str) -> list[tuple]:
  return sorted(tuple(e[f] for f in fields) for e in examples)


def _assert_nothing_left(data_dir: pathlib.Path, name: str) -> None:
  assert not (data_dir / name).exists(), sorted(data_dir.rglob('*'))
  assert not list(data_dir.rglob('*incomplete*'))


@pytest.fixture(scope='module')
def ck_plus_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp('ck_plus')
  return root, fx.write_ck_plus(root, np.random.default_rng(0))


@pytest.mark.parametrize('config', ['8class', '6class'])
def test_ck_plus(ck_plus_tree, tmp_path, config):
  root, expected = ck_plus_tree
  builder = _build(f'ck_plus/{config}', root, tmp_path)
  examples = _examples(builder)
  assert _rows(examples, 'subject', 'sequence', 'frame', 'label') == expected[config]
  names = {'8class': ['neutral', 'anger', 'contempt', 'disgust', 'fear', 'happy', 'sadness', 'surprise'],
           '6class': ['anger', 'disgust', 'fear', 'happy', 'sadness', 'surprise']}[config]
  assert builder.info.features['label'].names == names
  assert builder.info.metadata['faces']['alignment'] == 'landmarks'
  assert builder.info.metadata['no_face_count'] == {'train': 0}
  for e in examples:
    assert e['image'].shape == (224, 224, 3) and e['image'].dtype == np.uint8
  # The stored crop is the frame aligned on the fixture's eye centres; S010's frames are grey, so all channels match.
  e = next(e for e in examples if e['subject'] == 'S010')
  frame = np.asarray(Image.open(root / 'cohn-kanade-images' / 'S010' / e['sequence'][5:] /
                                f'{e["sequence"]}_{e["frame"]:08d}.png'))
  want = faces.align_by_eyes(np.repeat(frame[..., None], 3, -1), *map(np.array, fx.CK_EYES), 224)
  assert np.abs(e['image'].astype(int) - want).max() <= 2
  assert (e['image'][..., 0] == e['image'][..., 2]).all()


def test_oulu_casia_reports_the_frame_without_a_face(tmp_path):
  root = tmp_path / 'manual'
  expected = fx.write_oulu_casia(root, np.random.default_rng(1))
  builder = _build('oulu_casia', root, tmp_path / 'data')
  examples = _examples(builder)
  assert _rows(examples, 'subject', 'sequence', 'frame', 'label') == expected
  assert builder.info.features['label'].names == list(_common.BASIC6)
  assert builder.info.metadata['no_face'] == {'train': [fx.OULU_NO_FACE]}
  assert builder.info.metadata['no_face_count'] == {'train': 1}
  # Version 1.1.0 finds the faces with YuNet (1.0.0: the Haar cascade); the fixture's drawn faces suit both.
  assert builder.info.metadata['faces'] == {'alignment': 'yunet', 'image_size': 224, 'margin': 0.2}
  assert str(builder.info.version) == '1.1.0'
  assert examples[0]['image'].shape == (224, 224, 3)
  # The report is saved with the dataset, so a later reader sees it too.
  reread = tfds.builder('oulu_casia', data_dir=str(tmp_path / 'data'))
  assert reread.info.metadata['no_face'] == {'train': [fx.OULU_NO_FACE]}


def test_sfew(tmp_path):
  root = tmp_path / 'manual'
  expected = fx.write_sfew(root, np.random.default_rng(2))
  builder = _build('sfew', root, tmp_path / 'data')
  assert set(builder.info.splits) == {'train', 'validation'}
  for split, rows in expected.items():
    examples = _examples(builder, split)
    assert _rows(examples, 'subject', 'label') == rows
    assert examples[0]['image'].shape == (224, 224, 3)
  assert builder.info.features['label'].names == list(_common.BASIC7)
  assert builder.info.metadata['no_face_count'] == {'train': 0, 'validation': 0}


def test_fer2013(tmp_path):
  rows = fx.fer2013_rows(np.random.default_rng(3))
  fx.write_fer2013(tmp_path / 'manual', rows)
  builder = _build('fer2013', tmp_path / 'manual', tmp_path / 'data')
  splits = {'Training': 'train', 'PublicTest': 'public_test', 'PrivateTest': 'private_test'}
  for usage, split in splits.items():
    examples = {e['subject']: e for e in _examples(builder, split)}
    want = {f'line{line:05d}': row for line, row in enumerate(rows, start=2) if row[2] == usage}
    assert sorted(examples) == sorted(want)
    for subject, row in want.items():
      grey = np.array(row[1].split(), dtype=np.uint8).reshape(48, 48)
      np.testing.assert_array_equal(examples[subject]['image'], np.repeat(grey[..., None], 3, -1))
      assert examples[subject]['label'] == _common.BASIC7[int(row[0])]


def test_tfd_keeps_labelled_rows_and_the_official_folds(tmp_path):
  images = fx.write_tfd(tmp_path / 'manual', 48, np.random.default_rng(4))
  builder = _build('tfd/48x48', tmp_path / 'manual', tmp_path / 'data')
  examples = _examples(builder)
  labelled = np.flatnonzero(fx.TFD_LABS_EX != -1)
  assert len(examples) == len(labelled) == 5
  by_image = {e['image'][..., 0].tobytes(): e for e in examples}
  for i in labelled:
    e = by_image[images[i].tobytes()]
    assert e['label'] == _common.BASIC7[fx.TFD_LABS_EX[i] - 1]
    assert e['subject'] == str(fx.TFD_LABS_ID[i])
    np.testing.assert_array_equal(e['folds'], fx.TFD_FOLDS[i])
    assert e['image'].shape == (48, 48, 3)


def test_ck_plus_48(tmp_path):
  expected = fx.write_ck_plus_48(tmp_path / 'manual', np.random.default_rng(5))
  builder = _build('ck_plus_48', tmp_path / 'manual', tmp_path / 'data')
  examples = _examples(builder)
  assert _rows(examples, 'subject', 'sequence', 'frame', 'label') == expected
  assert builder.info.features['label'].names == [
      'anger', 'contempt', 'disgust', 'fear', 'happy', 'sadness', 'surprise']
  assert examples[0]['image'].shape == (48, 48, 3)


def test_building_twice_is_a_no_op(tmp_path):
  fx.write_ck_plus_48(tmp_path / 'manual', np.random.default_rng(6))
  _build('ck_plus_48', tmp_path / 'manual', tmp_path / 'data')
  before = {p: p.stat().st_mtime_ns for p in (tmp_path / 'data').rglob('*')}
  shutil.rmtree(tmp_path / 'manual')  # a second build that generated anything would fail now
  _build('ck_plus_48', tmp_path / 'manual', tmp_path / 'data')
  assert {p: p.stat().st_mtime_ns for p in (tmp_path / 'data').rglob('*')} == before


def test_failed_build_leaves_nothing_and_can_be_rerun(tmp_path):
  fx.write_ck_plus_48(tmp_path / 'manual', np.random.default_rng(7))
  bad = tmp_path / 'manual' / 'CK+48' / 'surprise' / 'S011_002_00000020.png'
  good = bad.read_bytes()
  bad.write_bytes(b'not a png')
  data_dir = tmp_path / 'data'
  with pytest.raises(ValueError, match=re.escape(str(bad)) + ': cannot decode the image.*expected a PNG or JPEG'):
    _build('ck_plus_48', tmp_path / 'manual', data_dir)
  _assert_nothing_left(data_dir, 'ck_plus_48')
  bad.write_bytes(good)
  assert len(_examples(_build('ck_plus_48', tmp_path / 'manual', data_dir))) == len(fx.CK48_FILES)


def _ck_plus_without_emotion(root):
  shutil.rmtree(root / 'Emotion')


def _ck_plus_bad_emotion(root):
  next((root / 'Emotion').rglob('*_emotion.txt')).write_text('   happy\n')


def _oulu_unknown_class(root):
  (root / 'OriginalImg/VL/Strong/P001/Anger').rename(root / 'OriginalImg/VL/Strong/P001/Angry')


def _sfew_without_val(root):
  shutil.rmtree(root / 'Val')


def _ck_plus_48_bad_name(root):
  next((root / 'CK+48' / 'anger').glob('*.png')).rename(root / 'CK+48' / 'anger' / 'face1.png')


def _tfd_without_folds(root):
  fx.write_tfd(root, 48, np.random.default_rng(0), folds=None)


def _tfd_bad_label(root):
  fx.write_tfd(root, 48, np.random.default_rng(0), labs_ex=np.array([[1], [-1], [9], [3], [-1], [4], [2]]))


@pytest.mark.parametrize('name, write, damage, error, message', [
    ('ck_plus', fx.write_ck_plus, _ck_plus_without_emotion, FileNotFoundError,
     r'/Emotion: folder not found; expected CK\+ labels as Emotion/S005/001/'),
    ('ck_plus', fx.write_ck_plus, _ck_plus_bad_emotion, ValueError,
     r'_emotion.txt: expected one number 0-7 \(like "   3.0000000e\+00"\), got \'   happy\\n\''),
    ('oulu_casia', fx.write_oulu_casia, _oulu_unknown_class, ValueError,
     r'P001/Angry: unexpected folder; expected class folders named \[\'Anger\''),
    ('sfew', fx.write_sfew, _sfew_without_val, FileNotFoundError,
     r'Val/Val_Aligned_Faces: folder not found; expected SFEW 2.0 validation faces'),
    ('ck_plus_48', fx.write_ck_plus_48, _ck_plus_48_bad_name, ValueError,
     r'anger/face1.png: expected a file named like S005_001_00000011.png'),
    ('tfd/48x48', lambda root, rng: None, _tfd_without_folds, ValueError,
     r"TFD_48x48.mat: no variable\(s\) \['folds'\]"),
    ('tfd/48x48', lambda root, rng: None, _tfd_bad_label, ValueError,
     r'TFD_48x48.mat: labs_ex\[2\] = 9; expected 1-7, or -1 for unlabelled'),
])
def test_malformed_data_names_the_path_and_leaves_nothing(tmp_path, name, write, damage, error, message):
  root = tmp_path / 'manual'
  root.mkdir()
  write(root, np.random.default_rng(8))
  damage(root)
  with pytest.raises(error, match=message):
    _build(name, root, tmp_path / 'data')
  _assert_nothing_left(tmp_path / 'data', name.split('/')[0])


def test_ck_plus_wrong_folder(ck_plus_tree, tmp_path):
  root, _ = ck_plus_tree
  with pytest.raises(FileNotFoundError, match='cohn-kanade-images/cohn-kanade-images: folder not found'):
    _build('ck_plus', root / 'cohn-kanade-images', tmp_path)
  _assert_nothing_left(tmp_path, 'ck_plus')


def test_fer2013_row_with_2303_pixels(tmp_path):
  rows = fx.fer2013_rows(np.random.default_rng(9))
  rows[1][1] = rows[1][1].rsplit(' ', 1)[0]
  path = fx.write_fer2013(tmp_path / 'manual', rows)
  with pytest.raises(ValueError, match=re.escape(f'{path}, line 3: 2303 pixels; expected 2304 (48x48)')):
    _build('fer2013', tmp_path / 'manual', tmp_path / 'data')
  _assert_nothing_left(tmp_path / 'data', 'fer2013')


def test_empty_manual_dir_shows_the_instructions(tmp_path):
  (tmp_path / 'manual').mkdir()
  with pytest.raises(errors.MissingInput, match='Request the Oulu-CASIA'):
    _build('oulu_casia', tmp_path / 'manual', tmp_path / 'data')
  _assert_nothing_left(tmp_path / 'data', 'oulu_casia')


def test_cli_builds_then_reuses(tmp_path, capsys):
  fx.write_fer2013(tmp_path / 'manual', fx.fer2013_rows(np.random.default_rng(10)))
  args = ['build', 'fer2013', f'--data_dir={tmp_path / "data"}', f'--manual_dir={tmp_path / "manual"}']
  build.define_flags()  # what `python -m fn2en_jax.data.build` does before absl parses its flags
  flags.FLAGS.unparse_flags()
  build.main(flags.FLAGS(args))
  assert 'built in' in capsys.readouterr().out
  build.main(flags.FLAGS(args))
  out = capsys.readouterr().out
  assert out.startswith('already built') and 'train: 4 examples' in out and 'private_test: 2 examples' in out
  reread = tfds.builder('fer2013', data_dir=str(tmp_path / 'data'))
  assert len(reread.as_data_source()['public_test']) == 2


def test_face_config_rejects_an_unknown_alignment():
  with pytest.raises(ValueError, match="x: alignment 'mtcnn' is not one of"):
    _common.FaceConfig(name='x', alignment='mtcnn')
