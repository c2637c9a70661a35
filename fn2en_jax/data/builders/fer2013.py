"""FER2013 (ICML 2013 representation-learning challenge): 48x48 grey faces, stored as 48x48 RGB (equal channels).

Splits from the `Usage` column: `train` (Training), `public_test` (PublicTest), `private_test` (PrivateTest).
Labels in the file's own order 0..6: anger, disgust, fear, happy, sadness, surprise, neutral (the order SFEW and
TFD use here too). FER2013 has no subject ids: `subject` is the row's line in the CSV (line00002, ...), so
subject-disjoint folds over it are plain example folds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from fn2en_jax import errors
from fn2en_jax.data.builders import _common

IMAGE_SIZE = 48
_HEADER = ['emotion', 'pixels', 'Usage']
_HOMEPAGE = 'https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge'
_SPLITS = {'Training': 'train', 'PublicTest': 'public_test', 'PrivateTest': 'private_test'}


def rows(path: epath.Path) -> Iterator[tuple[int, str, int, list[str]]]:
  """Checked rows of fer2013.csv as (line, split, label, pixel tokens); the pixel values are checked by `image`."""
  with path.open() as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header != _HEADER:
      raise errors.InputError(f'{path}, line 1: expected the header "{",".join(_HEADER)}", got {header}.',
                              _common.FILE_REMEDY)
    for row in reader:
      where = f'{path}, line {reader.line_num}'
      if len(row) != 3:
        raise errors.InputError(f'{where}: {len(row)} fields; expected 3 (emotion,pixels,Usage).', _common.FILE_REMEDY)
      emotion, pixels, usage = row
      if emotion not in {str(i) for i in range(len(_common.BASIC7))}:
        raise errors.InputError(f'{where}: emotion {emotion!r}; expected an integer 0-6.', _common.FILE_REMEDY)
      if usage not in _SPLITS:
        raise errors.InputError(f'{where}: Usage {usage!r}; expected one of {sorted(_SPLITS)}.', _common.FILE_REMEDY)
      tokens = pixels.split()
      if len(tokens) != IMAGE_SIZE * IMAGE_SIZE:
        raise errors.InputError(f'{where}: {len(tokens)} pixels; expected {IMAGE_SIZE * IMAGE_SIZE} ({IMAGE_SIZE}x'
                                f'{IMAGE_SIZE}) space-separated grey values 0-255.', _common.FILE_REMEDY)
      yield reader.line_num, _SPLITS[usage], int(emotion), tokens


def image(tokens: list[str], where: str) -> np.ndarray:
  """The 48x48x3 uint8 image of one row's pixel tokens."""
  try:
    values = np.array(tokens, dtype=np.int64)
  except ValueError as e:
    raise errors.InputError(f'{where}: a pixel is not an integer ({e}); expected grey values 0-255.',
                            _common.FILE_REMEDY) from e
  if values.min() < 0 or values.max() > 255:
    raise errors.InputError(f'{where}: pixel values span {values.min()}..{values.max()}; expected 0-255.',
                            _common.FILE_REMEDY)
  return _common.to_rgb(values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))


class Fer2013(tfds.core.GeneratorBasedBuilder):
  """FER2013 (see the module docstring)."""

  name = 'fer2013'
  VERSION = _common.VERSION
  RELEASE_NOTES = _common.RELEASE_NOTES
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download fer2013.tar.gz from the Data tab of the Kaggle challenge "Challenges in Representation Learning: Facial
  Expression Recognition Challenge" (accept its rules):
  https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data
  Unpack it and pass the folder that holds fer2013.csv (columns emotion,pixels,Usage) as
  --manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return _common.dataset_info(
        self, description=__doc__, classes=_common.BASIC7, image_size=IMAGE_SIZE,
        homepage=_HOMEPAGE,
        citation='Goodfellow et al., Challenges in representation learning: a report on three machine learning '
        'contests, ICONIP 2013.')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    path = _common.require(dl_manager.manual_dir / 'fer2013.csv', 'the FER2013 CSV (emotion,pixels,Usage)',
                           is_dir=False)
    return {split: self._generate_examples(path, split) for split in _SPLITS.values()}

  def _generate_examples(self, path: epath.Path, split: str):
    # Every split reads the whole file, so a malformed row stops the build whichever split it belongs to.
    for line, row_split, label, tokens in rows(path):
      if row_split == split:
        key = f'line{line:05d}'
        yield key, {'image': image(tokens, f'{path}, line {line}'), 'label': label, 'subject': key}
