"""CK+ (Extended Cohn-Kanade) with the paper's protocol: the last 3 frames of each labelled sequence, plus its first
frame as neutral; faces aligned by the eye centres of CK+'s own 68 landmarks.

Configs: `8class` (default; CK+'s codes 0-7: neutral, anger, contempt, disgust, fear, happy, sadness, surprise)
and `6class` (no neutral, no contempt: anger, disgust, fear, happy, sadness, surprise). One split, `train`; the
10 subject-independent folds come from `fn2en_jax.data.folds.fold_split` over the `subject` feature.
"""

from __future__ import annotations

import dataclasses
import re

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from fn2en_jax import errors
from fn2en_jax.data.builders import _common

_FRAME_NAME = re.compile(r'^S\d+_\d+_(\d+)$')


@dataclasses.dataclass(eq=False)
class CkPlusConfig(_common.FaceConfig):
  """`classes`: the label names kept, in label order; frames of any other class are left out."""
  classes: tuple[str, ...] = _common.CK_PLUS8


def _config(name: str, classes: tuple[str, ...], what: str) -> CkPlusConfig:
  return CkPlusConfig(
      name=name, classes=classes, alignment='landmarks', image_size=224,
      description=f'{what}; faces aligned by the eye centres of the 68 landmarks, 224x224 RGB.')


def _read_emotion(path: epath.Path) -> str:
  """The class name in an *_emotion.txt file, which holds one float code like '   3.0000000e+00'."""
  text = path.read_text()
  try:
    code = float(text)
  except ValueError:
    code = None
  if code not in range(len(_common.CK_PLUS8)):  # also rejects 2.5, nan and inf
    raise errors.InputError(f'{path}: expected one number 0-7 (like "   3.0000000e+00"), got {text!r}.',
                            _common.FILE_REMEDY)
  return _common.CK_PLUS8[int(code)]


def _read_landmarks(path: epath.Path) -> np.ndarray:
  _common.require(path, 'CK+ landmarks (Landmarks/S005/001/S005_001_00000001_landmarks.txt, 68 lines "x y")',
                  is_dir=False)
  try:
    with path.open() as f:
      points = np.loadtxt(f, dtype=np.float64, ndmin=2)
  except ValueError as e:
    raise errors.InputError(f'{path}: expected 68 lines of two numbers "x y" ({e}).', _common.FILE_REMEDY) from e
  if points.shape != (68, 2):
    raise errors.InputError(f'{path}: expected 68 lines of two numbers "x y", got an array of shape {points.shape}.',
                            _common.FILE_REMEDY)
  return points


def _frame_number(path: epath.Path) -> int:
  match = _FRAME_NAME.match(path.stem)
  if match is None:
    raise errors.InputError(f'{path}: expected a frame named like S005_001_00000011.png.', _common.FILE_REMEDY)
  return int(match.group(1))


def frames(root: epath.Path, config: CkPlusConfig) -> list[_common.Frame]:
  """The protocol's frames under `root` (manual_dir); checks the whole layout before any image is decoded."""
  images_root = _common.require(root / 'cohn-kanade-images', 'CK+ frames as cohn-kanade-images/S005/001/*.png',
                                is_dir=True)
  emotion_root = _common.require(
      root / 'Emotion', 'CK+ labels as Emotion/S005/001/S005_001_00000011_emotion.txt (Emotion_labels.zip)',
      is_dir=True)
  out = []
  for subject_dir in _common.subfolders(emotion_root):
    for sequence_dir in _common.subfolders(subject_dir):
      label_files = sorted(sequence_dir.glob('*_emotion.txt'))
      if not label_files:  # Only 327 of the 593 sequences are labelled; the others have an empty folder.
        continue
      if len(label_files) > 1:
        raise errors.InputError(f'{sequence_dir}: {len(label_files)} *_emotion.txt files; expected one.',
                                _common.LAYOUT_REMEDY)
      peak = _read_emotion(label_files[0])
      subject, sequence = subject_dir.name, sequence_dir.name
      images_dir = _common.require(images_root / subject / sequence,
                                   f'the frames of the labelled sequence {subject}/{sequence}', is_dir=True)
      pngs = sorted(images_dir.glob('*.png'))
      if len(pngs) < 4:
        raise errors.InputError(f'{images_dir}: {len(pngs)} frames; expected at least 4 (a neutral first frame and 3 '
                                'peak frames).', _common.LAYOUT_REMEDY)
      for path, name in [(pngs[0], 'neutral')] + [(p, peak) for p in pngs[-3:]]:
        if name not in config.classes:
          continue
        landmarks = None
        if config.alignment == 'landmarks':
          landmarks = _read_landmarks(root / 'Landmarks' / subject / sequence / f'{path.stem}_landmarks.txt')
        out.append(_common.Frame(
            key=str(path.relative_to(root)), path=path, landmarks=landmarks,
            fields={'label': name, 'subject': subject, 'sequence': f'{subject}_{sequence}',
                    'frame': _frame_number(path)}))
  if not out:
    raise errors.InputError(f'{emotion_root}: no labelled sequence found; expected '
                            'Emotion/S005/001/S005_001_00000011_emotion.txt files.', _common.LAYOUT_REMEDY)
  return out


class CkPlus(_common.FaceBuilder):
  """CK+, the paper's protocol (see the module docstring)."""

  name = 'ck_plus'
  VERSION = _common.VERSION
  RELEASE_NOTES = _common.RELEASE_NOTES
  BUILDER_CONFIGS = [
      _config('8class', _common.CK_PLUS8, '8 classes with neutral (first frames) and contempt'),
      _config('6class', _common.BASIC6, '6 basic expressions: no neutral, no contempt'),
  ]
  DEFAULT_CONFIG_NAME = '8class'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Request CK+ at https://www.jeffcohn.net/Resources/ (academic licence). Unzip extended-cohn-kanade-images.zip,
  Emotion_labels.zip and Landmarks.zip into one folder and pass that folder as --manual_dir. It must hold:
    cohn-kanade-images/S005/001/S005_001_00000001.png ...
    Emotion/S005/001/S005_001_00000011_emotion.txt     (one float 0-7; empty folder if unlabelled)
    Landmarks/S005/001/S005_001_00000001_landmarks.txt (68 lines "x y")
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return _common.dataset_info(
        self, description=__doc__, classes=self.builder_config.classes,
        image_size=self.builder_config.image_size, sequences=True,
        homepage='https://www.jeffcohn.net/Resources/',
        citation='Lucey et al., The Extended Cohn-Kanade Dataset (CK+), CVPR Workshops 2010.')

  def _frames(self, root: epath.Path) -> dict[str, list[_common.Frame]]:
    return {'train': frames(root, self.builder_config)}
