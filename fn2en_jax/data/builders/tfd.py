"""TFD (Toronto Face Database, Susskind et al.): the labelled faces of TFD_96x96.mat or TFD_48x48.mat, already
aligned by the authors, stored at the file's own size as RGB (equal channels).

Configs: `96x96` (default) and `48x48`, one per file. One split, `train`, holding every labelled face; rows with
`labs_ex == -1` (unlabelled) are dropped. The 5 official folds travel as the feature `folds` (int32[5], TFD's codes:
1 train, 2 valid, 3 test, 0 unused); `fn2en_jax.data.folds.tfd_fold_split(folds, i)` turns them into indices.
Labels, from `labs_ex` 1..7: anger, disgust, fear, happy, sadness, surprise, neutral. `subject` is `labs_id`.
"""

from __future__ import annotations

import dataclasses

from etils import epath
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from fn2en_jax.data import folds as folds_lib
from fn2en_jax import errors
from fn2en_jax.data.builders import _common

_UNLABELLED = -1
_KEYS = ('images', 'labs_ex', 'labs_id', 'folds')


@dataclasses.dataclass(eq=False)
class TfdConfig(tfds.core.BuilderConfig):
  """`image_size`: 96 or 48, which also picks the file TFD_{size}x{size}.mat."""
  image_size: int = 96

  @property
  def file_name(self) -> str:
    return f'TFD_{self.image_size}x{self.image_size}.mat'


def load(path: epath.Path, image_size: int) -> dict[str, np.ndarray]:
  """The four arrays of a TFD .mat file, flattened where MATLAB stored columns, with their shapes checked."""
  try:
    with path.open('rb') as f:
      mat = scipy.io.loadmat(f)
  except (ValueError, NotImplementedError, OSError) as e:
    raise errors.InputError(f'{path}: cannot read it as a MATLAB file ({e}); expected TFD\'s .mat as distributed.',
                            _common.FILE_REMEDY) from e
  missing = [key for key in _KEYS if key not in mat]
  if missing:
    raise errors.InputError(f'{path}: no variable(s) {missing}; expected {list(_KEYS)}.', _common.FILE_REMEDY)
  data = {'images': mat['images'], 'labs_ex': mat['labs_ex'].ravel(), 'labs_id': mat['labs_id'].ravel(),
          'folds': mat['folds']}
  n = len(data['images'])
  expected = {'images': (n, image_size, image_size), 'labs_ex': (n,), 'labs_id': (n,),
              'folds': (n, folds_lib.TFD_NUM_FOLDS)}
  for key, shape in expected.items():
    if data[key].shape != shape:
      raise errors.InputError(f'{path}: {key} has shape {data[key].shape}; expected {shape}.', _common.FILE_REMEDY)
  if data['images'].dtype != np.uint8:
    raise errors.InputError(f'{path}: images are {data["images"].dtype}; expected uint8 grey values.',
                            _common.FILE_REMEDY)
  labels = data['labs_ex']
  bad = np.flatnonzero((labels != _UNLABELLED) & ((labels < 1) | (labels > len(_common.BASIC7))))
  if bad.size:
    raise errors.InputError(f'{path}: labs_ex[{bad[0]}] = {labels[bad[0]]}; expected 1-7, or -1 for unlabelled.',
                            _common.FILE_REMEDY)
  check_subject_independent(path, data['labs_id'][labels != _UNLABELLED], data['folds'][labels != _UNLABELLED])
  return data


def check_subject_independent(path: epath.Path, subjects: np.ndarray, folds: np.ndarray) -> None:
  """Raises unless, in every official fold, each subject's faces all lie in one part (train, valid or test).

  A subject in two parts of a fold would let the test set hold faces of people seen in training, which is what the
  official folds exist to prevent; it means the file was edited or is not TFD's.
  """
  for fold in range(folds.shape[1]):
    parts = {}
    for subject, code in zip(subjects, folds[:, fold]):
      if code != 0:  # 0: the face is unused in this fold
        parts.setdefault(int(subject), set()).add(int(code))
    mixed = sorted(subject for subject, codes in parts.items() if len(codes) > 1)
    if mixed:
      names = {1: 'train', 2: 'valid', 3: 'test'}
      where = ' and '.join(names.get(c, str(c)) for c in sorted(parts[mixed[0]]))
      raise errors.InputError(
          f'{path}: subject {mixed[0]} (labs_id) is in {where} of official fold {fold}'
          f'{f" (and {len(mixed) - 1} more subjects)" if len(mixed) > 1 else ""}; expected each subject in one part '
          'of each fold.', 'use the TFD .mat file as distributed; its folds keep every subject in one part')


class Tfd(tfds.core.GeneratorBasedBuilder):
  """TFD (see the module docstring)."""

  name = 'tfd'
  VERSION = _common.VERSION
  RELEASE_NOTES = _common.RELEASE_NOTES
  BUILDER_CONFIGS = [
      TfdConfig(name='96x96', image_size=96, description='TFD_96x96.mat, 96x96 RGB.'),
      TfdConfig(name='48x48', image_size=48, description='TFD_48x48.mat, 48x48 RGB.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Request the Toronto Face Database from its authors (Josh Susskind, Adam Anderson and Geoffrey Hinton,
  University of Toronto; http://aclab.ca/users/josh/TFD.html; research licence). Pass the folder that holds
  TFD_96x96.mat (config 96x96) and/or TFD_48x48.mat (config 48x48) as --manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return _common.dataset_info(
        self, description=__doc__, classes=_common.BASIC7, image_size=self.builder_config.image_size,
        homepage='http://aclab.ca/users/josh/TFD.html',
        citation='Susskind, Anderson, Hinton, The Toronto Face Database, Technical report UTML TR 2010-001, '
        'University of Toronto, 2010.',
        folds=tfds.features.Tensor(shape=(folds_lib.TFD_NUM_FOLDS,), dtype=np.int32))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    path = _common.require(dl_manager.manual_dir / self.builder_config.file_name,
                           f'TFD\'s {self.builder_config.file_name}', is_dir=False)
    return {'train': self._generate_examples(load(path, self.builder_config.image_size))}

  def _generate_examples(self, data: dict[str, np.ndarray]):
    for index in np.flatnonzero(data['labs_ex'] != _UNLABELLED):
      yield f'row{index:06d}', {
          'image': _common.to_rgb(data['images'][index]),
          'label': int(data['labs_ex'][index]) - 1,
          'subject': str(data['labs_id'][index]),
          'folds': data['folds'][index].astype(np.int32),
      }
