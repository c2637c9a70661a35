"""Oulu-CASIA NIR&VIS with the paper's protocol: the last 3 frames of each expression sequence, 6 classes; faces
found by YuNet (data/yunet.py; the dataset ships no landmarks) and cropped square with a 20% margin. Version 1.0.0
found them with OpenCV's Haar cascade, which misses far more faces (docs/datasets.md, "Face detectors").

Configs `{vl,ni}_{strong,weak,dark}`: spectrum (visible light or near infrared) and illumination; the paper's
`vl_strong` is the default. Labels: anger, disgust, fear, happy, sadness, surprise. One split, `train`; the 10
subject-independent folds come from `fn2en_jax.data.folds.fold_split` over `subject` (P001 ...).
A frame in which no face is found is logged and left out; the dataset's metadata lists it under `no_face`.
"""

from __future__ import annotations

import dataclasses

from etils import epath
import tensorflow_datasets as tfds

from fn2en_jax import errors
from fn2en_jax.data.builders import _common

# Folder names as distributed to label names.
_CLASSES = {'Anger': 'anger', 'Disgust': 'disgust', 'Fear': 'fear', 'Happiness': 'happy', 'Sadness': 'sadness',
            'Surprise': 'surprise'}
_PEAK_FRAMES = 3


@dataclasses.dataclass(eq=False)
class OuluCasiaConfig(_common.FaceConfig):
  """`spectrum`: VL or NI; `illumination`: Strong, Weak or Dark (the folder names under OriginalImg/)."""
  spectrum: str = 'VL'
  illumination: str = 'Strong'


def _frame_number(path: epath.Path) -> int:
  if not path.stem.isdigit():
    raise errors.InputError(f'{path}: expected a frame named like 000.jpeg.', _common.FILE_REMEDY)
  return int(path.stem)


def frames(root: epath.Path, config: OuluCasiaConfig) -> list[_common.Frame]:
  """The last 3 frames of every sequence under `root` (manual_dir); checks the layout before decoding images."""
  top = _common.require(
      root / 'OriginalImg' / config.spectrum / config.illumination,
      f'Oulu-CASIA as OriginalImg/{config.spectrum}/{config.illumination}/P001/Anger/000.jpeg', is_dir=True)
  out = []
  for subject_dir in _common.subfolders(top):
    for name, sequence_dir in _common.class_folders(subject_dir, _CLASSES):
      jpegs = sorted(sequence_dir.glob('*.jpeg'), key=_frame_number)
      if len(jpegs) < _PEAK_FRAMES:
        raise errors.InputError(f'{sequence_dir}: {len(jpegs)} .jpeg frames; expected at least {_PEAK_FRAMES}.',
                                _common.LAYOUT_REMEDY)
      out.extend(
          _common.Frame(key=str(path.relative_to(root)), path=path,
                        fields={'label': name, 'subject': subject_dir.name,
                                'sequence': f'{subject_dir.name}_{sequence_dir.name}', 'frame': _frame_number(path)})
          for path in jpegs[-_PEAK_FRAMES:])
  if not out:
    raise errors.InputError(f'{top}: no sequence found; expected P001/Anger/000.jpeg ... under it.',
                            _common.LAYOUT_REMEDY)
  return out


class OuluCasia(_common.FaceBuilder):
  """Oulu-CASIA, the paper's protocol (see the module docstring)."""

  name = 'oulu_casia'
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {**_common.RELEASE_NOTES, '1.1.0': 'Faces found by YuNet instead of the Haar cascade.'}
  BUILDER_CONFIGS = [
      OuluCasiaConfig(name=f'{spectrum.lower()}_{illumination.lower()}', spectrum=spectrum,
                      illumination=illumination, alignment='yunet', margin=0.2, image_size=224,
                      description=f'{spectrum}, {illumination} light; YuNet faces, 20% margin, 224x224 RGB.')
      for spectrum in ('VL', 'NI') for illumination in ('Strong', 'Weak', 'Dark')
  ]
  DEFAULT_CONFIG_NAME = 'vl_strong'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Request the Oulu-CASIA NIR&VIS facial expression database from the University of Oulu's Center for Machine
  Vision and Signal Analysis (https://www.oulu.fi/cmvs; academic licence). Unpack it and pass the folder that
  holds OriginalImg/ as --manual_dir:
    OriginalImg/{VL,NI}/{Strong,Weak,Dark}/P001/{Anger,Disgust,Fear,Happiness,Sadness,Surprise}/000.jpeg ...
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return _common.dataset_info(
        self, description=__doc__, classes=_common.BASIC6, image_size=self.builder_config.image_size,
        sequences=True, homepage='https://www.oulu.fi/cmvs',
        citation='Zhao et al., Facial expression recognition from near-infrared videos, Image and Vision '
        'Computing 29(9), 2011.')

  def _frames(self, root: epath.Path) -> dict[str, list[_common.Frame]]:
    return {'train': frames(root, self.builder_config)}
