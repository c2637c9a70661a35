"""image_folder: any <class>/<image> tree builds, subjects come from the file names, bad names stop the build
cleanly; leave_one_subject_out folds are subject-disjoint and test every example exactly once."""

from __future__ import annotations

import pathlib
import re

from absl import flags
import ml_collections
import numpy as np
import pytest

from fn2en_jax import errors
from fn2en_jax.data import build, folds, pipeline
from fn2en_jax.data.builders import image_folder
import fixtures_datasets as fx

# (class folder, file name, height, width, grey?): mixed sizes, grey and colour, PNG and JPEG, several naming styles
# the default regex must read (subject before the first `_` or `.`).
FILES = [
    ('happy', 'S005_001_00000011.png', 48, 48, True),
    ('happy', 'S010_002.png', 64, 40, False),
    ('happy', 'KA.HA1.39.png', 30, 50, True),
    ('sad', 'S005_003_00000002.png', 48, 48, True),
    ('sad', 'S011_001.jpg', 80, 60, False),
    ('sad', 'KA.SA2.40.png', 50, 30, False),
    ('surprise', 'S010_001_00000001.png', 40, 64, True),
    ('surprise', 'S011_004.png', 48, 48, False),
]
EXPECTED_SUBJECTS = {'S005_001_00000011.png': 'S005', 'S010_002.png': 'S010', 'KA.HA1.39.png': 'KA',
                     'S005_003_00000002.png': 'S005', 'S011_001.jpg': 'S011', 'KA.SA2.40.png': 'KA',
                     'S010_001_00000001.png': 'S010', 'S011_004.png': 'S011'}


def write_tree(root: pathlib.Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """The tree under root; returns file name -> the image as written (grey as (H, W))."""
  images = {}
  for folder, name, height, width, grey in FILES:
    image = fx.noise(rng, height, width, channels=None if grey else 3)
    if name.endswith('.jpg'):  # JPEG is lossy: a flat image survives it exactly enough to compare
      image = np.full_like(image, 128)
    if name == 'S005_001_00000011.png':  # smooth, so that two resamplers agree closely
      image = np.add.outer(np.arange(height) * 2, np.arange(width) * 3).astype(np.uint8)
    fx._save(root / folder / name, image)
    images[name] = image
  (root / 'sad' / 'notes.txt').write_text('not an image: skipped by its extension')
  return images


def _examples(builder) -> list[dict]:
  source = builder.as_data_source()['train']
  names = builder.info.features['label'].names
  return [{'label': names[r['label']], 'subject': r['subject'].decode(), 'image': r['image']}
          for r in (source[i] for i in range(len(source)))]


def _build(manual: pathlib.Path, data_dir: pathlib.Path, **options):
  config = build.builder_config('image_folder', manual_dir=str(manual), options=options)
  return build.get_builder('image_folder', data_dir=str(data_dir), manual_dir=str(manual), config=config)


def test_builds_any_tree_with_subjects_from_names_and_classes_from_folders(tmp_path):
  images = write_tree(tmp_path / 'faces', np.random.default_rng(0))
  builder = _build(tmp_path / 'faces', tmp_path / 'data', image_size=32)
  assert builder.info.features['label'].names == ['happy', 'sad', 'surprise']
  examples = _examples(builder)
  assert len(examples) == len(FILES)
  # Each example is one file: match them by label and subject and the centre-cropped, resized content.
  got = sorted((e['label'], e['subject']) for e in examples)
  assert got == sorted((folder, EXPECTED_SUBJECTS[name]) for folder, name, *_ in FILES)
  for e in examples:
    assert e['image'].shape == (32, 32, 3) and e['image'].dtype == np.uint8
  # A grey file is stored as three equal channels; the flat grey JPEG comes back flat.
  grey_48 = next(e for e in examples if e['label'] == 'happy' and e['subject'] == 'S005')['image']
  assert (grey_48[..., 0] == grey_48[..., 1]).all() and (grey_48[..., 1] == grey_48[..., 2]).all()
  jpeg = next(e for e in examples if e['subject'] == 'S011' and e['label'] == 'sad')['image']
  assert np.abs(jpeg.astype(int) - 128).max() <= 2
  # Same content as an independent centre crop + resize of the source (PIL, area-like), within resampling error.
  source = images['S005_001_00000011.png']
  reference = np.asarray(fx.Image.fromarray(source).resize((32, 32), fx.Image.BOX), np.float64)
  assert np.abs(grey_48[..., 0] - reference).max() <= 2


def test_given_classes_set_the_label_order_and_leave_other_folders_out(tmp_path):
  write_tree(tmp_path / 'faces', np.random.default_rng(1))
  builder = _build(tmp_path / 'faces', tmp_path / 'data', image_size=16, classes='surprise,happy')
  assert builder.info.features['label'].names == ['surprise', 'happy']
  assert sorted(e['label'] for e in _examples(builder)) == ['happy'] * 3 + ['surprise'] * 2


def test_user_regex_names_the_subject(tmp_path):
  write_tree(tmp_path / 'faces', np.random.default_rng(2))
  # The named group `subject`: the digits after `S<n>_` (S005_001_... -> 001), else the leading capitals (KA).
  builder = _build(tmp_path / 'faces', tmp_path / 'data', image_size=16,
                   subject_regex=r'^(?:S\d+_)?(?P<subject>[A-Z]*\d*)')
  expected = [name.split('_')[1].split('.')[0] if name.startswith('S') else name.split('.')[0]
              for _, name, *_ in FILES]
  assert sorted(e['subject'] for e in _examples(builder)) == sorted(expected)


def test_bad_file_name_names_file_and_regex_and_leaves_nothing(tmp_path):
  write_tree(tmp_path / 'faces', np.random.default_rng(3))
  bad = tmp_path / 'faces' / 'sad' / '_nosubject.png'
  fx._save(bad, fx.noise(np.random.default_rng(0), 20, 20))
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  with pytest.raises(errors.InputError, match=re.escape(str(bad.resolve())) + '.*' +
                     re.escape(repr(image_folder.DEFAULT_SUBJECT_REGEX))) as raised:
    _build(tmp_path / 'faces', data_dir, image_size=16)
  assert 'subject_regex' in raised.value.remedy
  assert list(data_dir.iterdir()) == []
  bad.unlink()  # fixed: the same command now builds
  assert len(_examples(_build(tmp_path / 'faces', data_dir, image_size=16))) == len(FILES)


def test_no_face_in_any_image_says_so_and_leaves_nothing(tmp_path):
  write_tree(tmp_path / 'faces', np.random.default_rng(6))  # noise and gradients: the detector finds no face
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  with pytest.raises(errors.InputError, match=r"split train: the face detector found no face in any of its 8 images "
                     r"\(alignment='haar'; the first: happy/KA.HA1.39.png\)") as raised:
    _build(tmp_path / 'faces', data_dir, image_size=16, alignment='haar')
  assert "alignment='none'" in raised.value.remedy
  assert list(data_dir.iterdir()) == []


def test_options_are_checked_and_name_their_dataset(tmp_path):
  write_tree(tmp_path / 'faces', np.random.default_rng(4))
  manual = str(tmp_path / 'faces')
  with pytest.raises(errors.ConfigError, match='unknown option'):
    build.builder_config('image_folder', manual_dir=manual, options={'imagesize': 32})
  with pytest.raises(errors.ConfigError, match='alignment'):
    build.builder_config('image_folder', manual_dir=manual, options={'alignment': 'eyes'})
  with pytest.raises(errors.ConfigError, match='not a regular expression'):
    build.builder_config('image_folder', manual_dir=manual, options={'subject_regex': '(['})
  with pytest.raises(errors.InputError, match='folder not found'):
    build.builder_config('image_folder', manual_dir=str(tmp_path / 'nowhere'), options={})
  with pytest.raises(errors.ConfigError, match='takes no builder options'):
    build.builder_config('ck_plus_48', manual_dir=manual, options={'image_size': 32})
  a = build.builder_config('image_folder', manual_dir=manual, options={'image_size': 32})
  assert a.name == build.builder_config('image_folder', manual_dir=manual, options={'image_size': 32}).name
  assert a.name != build.builder_config('image_folder', manual_dir=manual, options={'image_size': 48}).name
  assert build.parse_options(['image_size=48', "subject_regex=^(\\w+)-", 'classes=a,b']) == {
      'image_size': 48, 'subject_regex': '^(\\w+)-', 'classes': 'a,b'}


def test_build_cli_takes_options(tmp_path, capsys):
  write_tree(tmp_path / 'faces', np.random.default_rng(5))
  build.define_flags()
  argv = flags.FLAGS(['build', 'image_folder', f'--manual_dir={tmp_path / "faces"}',
                      f'--data_dir={tmp_path / "data"}', '--option=image_size=24', '--option=classes=happy,sad'])
  try:
    build.main(argv)
  finally:
    flags.FLAGS.unparse_flags()
  out = capsys.readouterr().out
  assert 'train: 6 examples' in out and "['happy', 'sad']" in out
  assert any(p.name == 'image_folder' for p in (tmp_path / 'data').iterdir())


def test_pipeline_builds_it_from_builder_options_and_splits_leave_one_subject_out(tmp_path):
  write_tree(tmp_path / 'faces', np.random.default_rng(6))
  data_cfg = ml_collections.ConfigDict(dict(
      name='image_folder', config='', manual_dir=str(tmp_path / 'faces'),
      builder_options=dict(image_size=16, alignment='none', margin=0.2,
                           subject_regex=image_folder.DEFAULT_SUBJECT_REGEX, classes=())))
  examples = pipeline.load(data_cfg, 'train', data_dir=str(tmp_path / 'data'))
  subjects = sorted(set(EXPECTED_SUBJECTS.values()))
  assert sorted(set(examples.subjects)) == subjects
  tested = []
  for fold, subject in enumerate(subjects):
    train, test = pipeline.leave_one_subject_out_split(examples, fold, len(subjects))
    assert set(test.subjects) == {subject} and subject not in set(train.subjects)
    assert len(train) + len(test) == len(examples)
    tested += list(test.indices)
  assert sorted(tested) == list(range(len(examples)))  # every example tested exactly once
  with pytest.raises(errors.ConfigError, match=f'num_folds={len(subjects) + 1}.*{len(subjects)} here'):
    folds.leave_one_subject_out(examples.subjects, 0, len(subjects) + 1)
