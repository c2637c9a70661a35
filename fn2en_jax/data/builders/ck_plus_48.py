"""CK+48: the common Kaggle copy of CK+, 48x48 face crops sorted into 7 class folders; stored as 48x48 RGB.

Not in the paper. Labels (CK+'s codes without neutral): anger, contempt, disgust, fear, happy, sadness,
surprise. `subject`, `sequence` and `frame` come from the file name: S005_001_00000011.png -> S005, S005_001, 11.
One split, `train`; 10 subject-independent folds come from `fn2en_jax.data.folds.fold_split` over `subject`.
"""

from __future__ import annotations

import re

from etils import epath
import tensorflow_datasets as tfds

from fn2en_jax import errors
from fn2en_jax.data.builders import _common

IMAGE_SIZE = 48
# The folder names are the label names.
_CLASSES = {name: name for name in _common.CK_PLUS8[1:]}
_FILE_NAME = re.compile(r'^(S\d+)_(\d+)_(\d+)$')


def examples(root: epath.Path):
  """(key, example) for every image under root/CK+48, checking names and sizes."""
  top = _common.require(root / 'CK+48', 'the CK+48 folder with class folders anger/ ... surprise/', is_dir=True)
  found = False
  for name, folder in _common.class_folders(top, _CLASSES):
    for path in _common.class_images(folder, '*.png'):
      match = _FILE_NAME.match(path.stem)
      if match is None:
        raise errors.InputError(f'{path}: expected a file named like S005_001_00000011.png (subject_sequence_frame).',
                                _common.FILE_REMEDY)
      image = _common.read_image(path)
      if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise errors.InputError(f'{path}: {image.shape[1]}x{image.shape[0]} pixels; expected '
                                f'{IMAGE_SIZE}x{IMAGE_SIZE}.',
                                _common.FILE_REMEDY)
      subject, sequence, frame = match.groups()
      found = True
      yield str(path.relative_to(root)), {'image': image, 'label': name, 'subject': subject,
                                          'sequence': f'{subject}_{sequence}', 'frame': int(frame)}
  if not found:
    raise errors.InputError(f'{top}: no .png image found; expected {sorted(_CLASSES)} folders of .png files.',
                            _common.LAYOUT_REMEDY)


class CkPlus48(tfds.core.GeneratorBasedBuilder):
  """CK+48 (see the module docstring)."""

  name = 'ck_plus_48'
  VERSION = _common.VERSION
  RELEASE_NOTES = _common.RELEASE_NOTES
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  CK+48 is a copy of CK+ (whose licence applies: https://www.jeffcohn.net/Resources/) shared on Kaggle as "CK+48".
  Pass the folder that holds it as --manual_dir:
    CK+48/{anger,contempt,disgust,fear,happy,sadness,surprise}/S005_001_00000011.png ...
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return _common.dataset_info(
        self, description=__doc__, classes=_common.CK_PLUS8[1:], image_size=IMAGE_SIZE, sequences=True,
        homepage='https://www.jeffcohn.net/Resources/',
        citation='Lucey et al., The Extended Cohn-Kanade Dataset (CK+), CVPR Workshops 2010.')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {'train': self._generate_examples(dl_manager.manual_dir)}

  def _generate_examples(self, root: epath.Path):
    return examples(root)
