"""What the expression-dataset builders share: label orders, the face config, checked reading, the face loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from fn2en_jax import errors
from fn2en_jax.data import faces

VERSION = tfds.core.Version('1.0.0')
RELEASE_NOTES = {'1.0.0': 'First release.'}

BASIC6 = ('anger', 'disgust', 'fear', 'happy', 'sadness', 'surprise')
# FER2013's own numbering (0 Angry .. 6 Neutral). TFD and SFEW use the same order so that FER2013 can be added to
# SFEW training without remapping labels.
BASIC7 = BASIC6 + ('neutral',)
# The codes 0..7 of CK+'s Emotion/*_emotion.txt files.
CK_PLUS8 = ('neutral', 'anger', 'contempt', 'disgust', 'fear', 'happy', 'sadness', 'surprise')

# The remedies of a bad input: a damaged or foreign file, and a folder that is not laid out as distributed.
FILE_REMEDY = ('replace the file with the one the dataset ships (or delete it if it does not belong there), then '
               'build again')
LAYOUT_REMEDY = ('unpack the dataset as distributed and pass its folder as --manual_dir; docs/datasets.md shows the '
                 'layout')


@dataclasses.dataclass(eq=False)
class FaceConfig(tfds.core.BuilderConfig):
  """A builder config that fixes how faces are cropped (once, at build time) and the stored image size.

  alignment: one of faces.ALIGNMENTS; margin: a detected box's growth on each side, as a fraction of its side.
  """
  image_size: int = 224
  alignment: str = 'none'
  margin: float = 0.2

  def __post_init__(self):
    if self.alignment not in faces.ALIGNMENTS:
      raise ValueError(f'{self.name}: alignment {self.alignment!r} is not one of {faces.ALIGNMENTS}.')


def dataset_info(builder: tfds.core.GeneratorBasedBuilder, *, description: str, classes: tuple[str, ...],
                 image_size: int, homepage: str, citation: str = '', sequences: bool = False,
                 **extra_features: tfds.features.FeatureConnector) -> tfds.core.DatasetInfo:
  """Features every builder shares: image (uint8 RGB, image_size square), label, subject; sequence/frame if any."""
  features = {
      'image': tfds.features.Image(shape=(image_size, image_size, 3), encoding_format='png'),
      'label': tfds.features.ClassLabel(names=classes),
      'subject': tfds.features.Text(),
      **extra_features,
  }
  if sequences:
    features.update(sequence=tfds.features.Text(), frame=tfds.features.Scalar(dtype=np.int32))
  return tfds.core.DatasetInfo(
      builder=builder, description=description, features=tfds.features.FeaturesDict(features),
      supervised_keys=('image', 'label'), homepage=homepage, citation=citation,
      metadata=tfds.core.MetadataDict())


def require(path: epath.Path, expected: str, *, is_dir: bool) -> epath.Path:
  """`path` itself, or errors.MissingInput naming it and saying what should be there."""
  if not (path.is_dir() if is_dir else path.is_file()):
    kind = 'folder' if is_dir else 'file'
    raise errors.MissingInput(f'{path}: {kind} not found; expected {expected}.', LAYOUT_REMEDY)
  return path


def subfolders(path: epath.Path) -> list[epath.Path]:
  """Sorted sub-folders, skipping hidden ones (.DS_Store-style debris in copies made on a Mac)."""
  return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith('.'))


def class_folders(parent: epath.Path, names: dict[str, str]) -> list[tuple[str, epath.Path]]:
  """(class name, folder) for each sub-folder of `parent`, whose names `names` maps to class names.

  A folder of another name (a label outside the class list) is refused rather than skipped: its images would be
  silently lost.
  """
  out = []
  for folder in subfolders(parent):
    if folder.name not in names:
      raise errors.InputError(f'{folder}: unexpected folder; expected class folders named {sorted(names)}.',
                              'rename it to one of those class names, or move it out of --manual_dir')
    out.append((names[folder.name], folder))
  return out


def class_images(folder: epath.Path, pattern: str) -> list[epath.Path]:
  """The sorted files matching `pattern` in a class folder, which must hold at least one (an empty class folder is
  a copy that lost its files, not a class with no examples)."""
  paths = sorted(p for p in folder.glob(pattern) if not p.name.startswith('.'))
  if not paths:
    raise errors.InputError(f'{folder}: empty class folder; expected {pattern} images of that class.',
                            'copy the images back from the dataset as distributed, or delete the folder to build '
                            'without that class')
  return paths


def to_rgb(image: np.ndarray) -> np.ndarray:
  """(H, W) or (H, W, 1) grey, or (H, W, 3), as uint8 (H, W, 3): grey is repeated into three equal channels."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise errors.InputError(f'expected a uint8 grey or RGB image, got {image.dtype} of shape {image.shape}.',
                            FILE_REMEDY)
  return image


def read_image(path: epath.Path) -> np.ndarray:
  """The decoded image as uint8 RGB; grey, palette and RGBA files are converted, a file that won't decode (or
  can't be read) raises errors.InputError naming it."""
  try:
    with path.open('rb') as f, Image.open(f) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise errors.InputError(f'{path}: cannot decode the image ({e}); expected a PNG or JPEG file.',
                            FILE_REMEDY) from e


@dataclasses.dataclass(frozen=True)
class Frame:
  """One source image to crop: `key` (its path relative to manual_dir) names it in reports and example keys."""
  key: str
  path: epath.Path
  fields: dict[str, Any]
  landmarks: np.ndarray | None = None


def generate_faces(frames: Iterable[Frame], config: FaceConfig, split: str,
                   metadata: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (key, example) for each frame, cropped as `config` says.

  A frame without a face is logged by name, left out, and listed in metadata['no_face'][split] (with its count in
  metadata['no_face_count'][split]); TFDS saves the metadata beside the dataset, so the report travels with it.
  """
  metadata['faces'] = {'alignment': config.alignment, 'image_size': config.image_size, 'margin': config.margin}
  no_face, kept = [], 0
  for frame in frames:
    image = faces.align(read_image(frame.path), config.alignment, config.image_size, landmarks=frame.landmarks,
                        margin=config.margin)
    if image is None:
      logging.warning('No face found in %s: left out of split %s.', frame.key, split)
      no_face.append(frame.key)
      continue
    kept += 1
    yield frame.key, {'image': image, **frame.fields}
  if not kept and no_face:  # else TFDS fails later with an assertion about an empty split
    raise errors.InputError(f'split {split}: the face detector found no face in any of its {len(no_face)} images '
                            f'(alignment={config.alignment!r}; the first: {no_face[0]})',
                            "if the images are face crops already, build with the option alignment='none'")
  metadata.setdefault('no_face', {})[split] = no_face
  metadata.setdefault('no_face_count', {})[split] = len(no_face)
  if no_face:
    logging.warning('%d frame(s) of split %s had no face; listed in the dataset metadata.', len(no_face), split)


class FaceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose examples are face crops of image files under manual_dir, cropped as its FaceConfig says."""

  def _frames(self, root: epath.Path) -> dict[str, list[Frame]]:
    """Split name -> its frames; raises on a wrong layout before any image is decoded."""
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {split: self._generate_examples(frames, split)
            for split, frames in self._frames(dl_manager.manual_dir).items()}

  def _generate_examples(self, frames: list[Frame], split: str):
    return generate_faces(frames, self.builder_config, split, self.info.metadata)
