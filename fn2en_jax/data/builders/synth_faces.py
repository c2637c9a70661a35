"""synth_faces: procedurally rendered faces, the built-in stand-in for a face-recognition set and CK+.

Two configs that share no person:

- `identities`: many people, many photographs each, random expressions, web-like conditions (`render.WILD`);
  `label` is the person. It plays the face-recognition data a face net (the teacher's start) is trained on.
- `expressions`: few people (CK+ scale), each posing the 8 CK+ classes at a few intensities plus a few neutral
  shots, in studio conditions (`render.LAB`); `label` is the expression.

Every image is a pure function of (seed, config kind, subject, image index): each has its own random stream,
and a person's identity and posing style come from a stream of (seed, kind, subject) alone, so a seed gives the
same bytes on every run and every machine, whatever the image size or the number of subjects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from fn2en_jax.data import render

EXPRESSIONS = render.EXPRESSIONS

# Part of every random stream, so the two configs never draw the same person.
_KIND_IDS = {'identities': 0, 'expressions': 1}
_SUBJECT_PREFIXES = {'identities': 'id', 'expressions': 'ex'}
# Face-recognition sets are web photographs; CK+ was posed in a studio.
_CONDITIONS = {'identities': render.WILD, 'expressions': render.LAB}
# Tags that keep a subject's identity, posing style and photographs on separate streams.
_IDENTITY_STREAM, _POSING_STREAM, _IMAGE_STREAM = 0, 1, 2

# Per-kind defaults; a field set to None does not apply to that kind.
_DEFAULTS = {
    'identities': {'num_subjects': 300, 'images_per_subject': 16, 'intensities': None, 'neutral_per_subject': None},
    'expressions': {'num_subjects': 60, 'images_per_subject': None, 'intensities': 3, 'neutral_per_subject': 3},
}
# Short tags for the config name of non-default values, e.g. 'expressions_s32_n6_seed1'.
_NAME_TAGS = {'image_size': 's', 'num_subjects': 'n', 'images_per_subject': 'i', 'intensities': 'k',
              'neutral_per_subject': 'z', 'seed': 'seed'}
_MIN_IMAGE_SIZE = 16
# The weakest intensity of an `expressions` sequence: CK+ labels the frames towards the apex, and below about
# half strength a pose is hard to tell from the poser's resting face even for people.
_MIN_INTENSITY = 0.4


@dataclasses.dataclass(eq=False)
class SynthFacesConfig(tfds.core.BuilderConfig):
  """What to render. Fields that do not apply to `kind` are None; build one with `make_config`."""
  kind: str = 'identities'
  image_size: int = 64
  num_subjects: int = 300
  images_per_subject: int | None = 16
  intensities: int | None = None
  neutral_per_subject: int | None = None
  seed: int = 0

  def __post_init__(self):
    _validate(self)

  @property
  def num_classes(self) -> int:
    return self.num_subjects if self.kind == 'identities' else len(EXPRESSIONS)

  @property
  def num_examples(self) -> int:
    if self.kind == 'identities':
      return self.num_subjects * self.images_per_subject
    return self.num_subjects * (self.neutral_per_subject + (len(EXPRESSIONS) - 1) * self.intensities)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _validate(config: SynthFacesConfig) -> None:
  if config.kind not in _DEFAULTS:
    raise ValueError(f'kind must be one of {sorted(_DEFAULTS)}, got {config.kind!r}')
  if not _is_int(config.image_size) or config.image_size < _MIN_IMAGE_SIZE:
    raise ValueError(f'image_size must be an int >= {_MIN_IMAGE_SIZE}, got {config.image_size!r}')
  if not _is_int(config.seed) or config.seed < 0:
    raise ValueError(f'seed must be an int >= 0, got {config.seed!r}')
  for field, default in _DEFAULTS[config.kind].items():
    value = getattr(config, field)
    if default is None and value is not None:
      raise ValueError(f'{field} does not apply to kind={config.kind!r}: leave it None, got {value!r}')
    if default is not None and (not _is_int(value) or value < 1):
      raise ValueError(f'{field} must be an int >= 1 for kind={config.kind!r}, got {value!r}')


def make_config(kind: str, *, image_size: int = 64, num_subjects: int | None = None,
                images_per_subject: int | None = None, intensities: int | None = None,
                neutral_per_subject: int | None = None, seed: int = 0) -> SynthFacesConfig:
  """Returns the registered config when every argument is the default, else a new config whose name encodes
  the non-default values (e.g. 'expressions_s32_n6_seed1'), so it gets its own data_dir folder."""
  if kind not in _DEFAULTS:
    raise ValueError(f'kind must be one of {sorted(_DEFAULTS)}, got {kind!r}')
  given = {'image_size': image_size, 'num_subjects': num_subjects, 'images_per_subject': images_per_subject,
           'intensities': intensities, 'neutral_per_subject': neutral_per_subject, 'seed': seed}
  defaults = _defaults(kind)
  values = {field: defaults[field] if value is None else value for field, value in given.items()}
  changed = [f'{_NAME_TAGS[field]}{value}' for field, value in values.items() if value != defaults[field]]
  if not changed:
    return _REGISTERED[kind]
  return SynthFacesConfig(name='_'.join([kind, *changed]), description=_describe(kind, values), kind=kind,
                          **values)


def _defaults(kind: str) -> dict[str, Any]:
  return {'image_size': 64, 'seed': 0, **_DEFAULTS[kind]}


def _describe(kind: str, values: dict[str, Any]) -> str:
  settings = ', '.join(f'{field}={value}' for field, value in values.items() if value is not None)
  return f'{kind}: {settings}'


def _registered(kind: str) -> SynthFacesConfig:
  return SynthFacesConfig(name=kind, description=_describe(kind, _defaults(kind)), kind=kind, **_defaults(kind))


_REGISTERED = {kind: _registered(kind) for kind in _DEFAULTS}


def subject_name(kind: str, subject: int) -> str:
  return f'{_SUBJECT_PREFIXES[kind]}{subject:04d}'


def _stream(config: SynthFacesConfig, subject: int, *tags: int) -> np.random.Generator:
  # The stream tag sits right after the subject, so no stream's entropy is a prefix of another's
  # (SeedSequence pads short entropy with zeros, which would make [s, k, i] and [s, k, i, 0] collide).
  return np.random.default_rng(np.random.SeedSequence([config.seed, _KIND_IDS[config.kind], subject, *tags]))


def subject_identity(config: SynthFacesConfig, subject: int) -> render.Identity:
  return render.sample_identity(_stream(config, subject, _IDENTITY_STREAM))


def subject_posing(config: SynthFacesConfig, subject: int) -> np.ndarray:
  return render.sample_posing(_stream(config, subject, _POSING_STREAM))


def _shots(config: SynthFacesConfig) -> Iterator[tuple[int, int, float, int]]:
  """(image index, expression, intensity, frame) of each photograph of an `expressions` subject.

  The neutral shots come first; then each expression at `intensities` levels evenly spaced from
  `_MIN_INTENSITY` to the apex (the apex alone if there is one level), like the last frames of a CK+ sequence.
  """
  for frame in range(config.neutral_per_subject):
    yield frame, 0, 0.0, frame
  levels = np.linspace(_MIN_INTENSITY, 1.0, config.intensities) if config.intensities > 1 else [1.0]
  for expression in range(1, len(EXPRESSIONS)):
    for frame, intensity in enumerate(levels):
      image = config.neutral_per_subject + (expression - 1) * config.intensities + frame
      yield image, expression, float(intensity), frame


def _photograph(config: SynthFacesConfig, identity: render.Identity, posing: np.ndarray, expression: int,
                intensity: float, rng: np.random.Generator) -> np.ndarray:
  pose = render.sample_expression(posing, expression, intensity, rng)
  return render.render(identity, pose, render.sample_nuisance(rng, _CONDITIONS[config.kind]), config.image_size)


def generate_examples(config: SynthFacesConfig) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (key, example) for every photograph the config describes, subject by subject."""
  for subject in range(config.num_subjects):
    name = subject_name(config.kind, subject)
    identity, posing = subject_identity(config, subject), subject_posing(config, subject)
    if config.kind == 'identities':
      for image in range(config.images_per_subject):
        rng = _stream(config, subject, _IMAGE_STREAM, image)
        # Face-recognition photos catch people in any expression, at any intensity.
        expression, intensity = int(rng.integers(len(EXPRESSIONS))), rng.uniform()
        pixels = _photograph(config, identity, posing, expression, intensity, rng)
        yield f'{name}_{image:04d}', {'image': pixels, 'label': subject, 'subject': name, 'sequence': name,
                                      'frame': image}
    else:
      for image, expression, intensity, frame in _shots(config):
        rng = _stream(config, subject, _IMAGE_STREAM, image)
        pixels = _photograph(config, identity, posing, expression, intensity, rng)
        yield f'{name}_{image:04d}', {'image': pixels, 'label': expression, 'subject': name,
                                      'sequence': f'{name}_{EXPRESSIONS[expression]}', 'frame': frame}


class SynthFaces(tfds.core.GeneratorBasedBuilder):
  """Procedurally rendered faces; nothing to download."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [_REGISTERED['identities'], _REGISTERED['expressions']]

  @classmethod
  def make_config(cls, config: str, *, manual_dir: str | None, **options) -> SynthFacesConfig:
    """The config to render from `config.data.builder_options` (the arguments of `make_config`)."""
    del manual_dir  # rendered, not read
    return make_config(config, **options)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if config.kind == 'identities':
      label = tfds.features.ClassLabel(num_classes=config.num_classes)
    else:
      label = tfds.features.ClassLabel(names=EXPRESSIONS)
    size = config.image_size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(size, size, 3), dtype=np.uint8, encoding_format='png'),
            'label': label,
            'subject': tfds.features.Text(),
            'sequence': tfds.features.Text(),
            'frame': np.int32,
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Everything is rendered.
    # One split with every subject: the pipeline cuts subject-disjoint train/test folds itself.
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    yield from generate_examples(self.builder_config)
