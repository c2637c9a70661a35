"""SFEW 2.0 (Static Facial Expressions in the Wild, EmotiW): the distributed aligned faces, 7 classes.

Splits: `train` (Train/Train_Aligned_Faces) and `validation` (Val/Val_Aligned_Faces), on which the paper reports.
Labels, in FER2013's order so that FER2013 can be added to training: anger, disgust, fear, happy, sadness,
surprise, neutral. The faces are already aligned by the organisers, so the config `aligned` (default) only takes the
central square and resizes it to 224x224 RGB. SFEW has no subject ids: `subject` is the movie the frame comes from,
the file name without its last two `_<digits>` groups (Airheads_000519240_00000005.png -> Airheads), or the
whole file name where it has no such groups.
"""

from __future__ import annotations

import re

from etils import epath
import tensorflow_datasets as tfds

from fn2en_jax import errors
from fn2en_jax.data.builders import _common

_CLASSES = {'Angry': 'anger', 'Disgust': 'disgust', 'Fear': 'fear', 'Happy': 'happy', 'Sad': 'sadness',
            'Surprise': 'surprise', 'Neutral': 'neutral'}
_SPLITS = {'train': ('Train', 'Train_Aligned_Faces'), 'validation': ('Val', 'Val_Aligned_Faces')}
# <movie>_<frame>_<face>: movie names may end in digits themselves (Harry_Potter_2).
_MOVIE = re.compile(r'^(.+)_\d+_\d+$')


def movie(path: epath.Path) -> str:
  """The movie name a SFEW file name starts with, or the whole stem."""
  match = _MOVIE.match(path.stem)
  return match.group(1) if match else path.stem


def frames(root: epath.Path, split: str) -> list[_common.Frame]:
  """The aligned faces of `split` under `root` (manual_dir)."""
  top = _common.require(root.joinpath(*_SPLITS[split]),
                        f'SFEW 2.0 {split} faces as {"/".join(_SPLITS[split])}/Angry/*.png ...', is_dir=True)
  out = [_common.Frame(key=str(path.relative_to(root)), path=path, fields={'label': name, 'subject': movie(path)})
         for name, folder in _common.class_folders(top, _CLASSES) for path in _common.class_images(folder, '*.png')]
  if not out:
    raise errors.InputError(f'{top}: no .png face found; expected {sorted(_CLASSES)} folders of .png files.',
                            _common.LAYOUT_REMEDY)
  return out


class Sfew(_common.FaceBuilder):
  """SFEW 2.0 aligned faces (see the module docstring)."""

  name = 'sfew'
  VERSION = _common.VERSION
  RELEASE_NOTES = _common.RELEASE_NOTES
  BUILDER_CONFIGS = [
      _common.FaceConfig(name='aligned', alignment='none', image_size=224,
                         description="The organisers' aligned faces; central square, 224x224 RGB."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Request SFEW 2.0 from its authors (Abhinav Dhall, https://users.cecs.anu.edu.au/~few_group/AFEW.html; EmotiW
  academic licence). Unpack Train_Aligned_Faces and Val_Aligned_Faces and pass the folder that holds:
    Train/Train_Aligned_Faces/{Angry,Disgust,Fear,Happy,Neutral,Sad,Surprise}/*.png
    Val/Val_Aligned_Faces/{Angry,Disgust,Fear,Happy,Neutral,Sad,Surprise}/*.png
  as --manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return _common.dataset_info(
        self, description=__doc__, classes=_common.BASIC7, image_size=self.builder_config.image_size,
        homepage='https://users.cecs.anu.edu.au/~few_group/AFEW.html',
        citation='Dhall et al., Static facial expression analysis in tough conditions: data, evaluation protocol '
        'and benchmark, ICCV Workshops 2011.')

  def _frames(self, root: epath.Path) -> dict[str, list[_common.Frame]]:
    return {split: frames(root, split) for split in _SPLITS}
