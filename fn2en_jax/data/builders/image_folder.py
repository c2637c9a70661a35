"""Any expression set laid out as `<class>/<image file>`: bring your own dataset.

  python -m fn2en_jax.data.build image_folder --manual_dir=DIR --data_dir=DIR [--option=KEY=VALUE ...]

`DIR` holds one folder per class, each with images of any size, grey or colour (PNG, JPEG, BMP, PGM, TIFF). Every
image is cropped (`alignment`: a centre square, a YuNet or Haar face box, see data/faces.py) and stored as RGB at
`image_size` square. The subject of an image, which subject-independent folds need, comes from its file name by
`subject_regex`: by default the leading run of letters and digits before `_` or `.` (`S005_001_00000011.png` ->
`S005`); a file whose name does not match stops the build before anything is written, naming the file and the regex.
The classes are the folder names, sorted, or `classes` (their order is the label order; folders not listed are left
out). One split, `train`; folds come from `data.protocol` ('subject_folds' or 'leave_one_subject_out').

The options live in an `ImageFolderConfig` made by `ImageFolder.make_config(manual_dir=..., **options)`: from the
build CLI (`--option=image_size=96`) or from a run's `config.data.builder_options` (configs/image_folder.py). The
config's name is the folder's name plus a hash of the folder's absolute path and every option, so two trees, or one
tree built two ways, never share a prepared dataset in `data_dir`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from fn2en_jax import errors
from fn2en_jax.data import faces
from fn2en_jax.data.builders import _common

# The leading run of letters and digits, ending at the first `_` or `.`.
DEFAULT_SUBJECT_REGEX = r'^([A-Za-z0-9]+)[_.]'
EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.pgm', '.ppm', '.tif', '.tiff')
OPTIONS = ('image_size', 'alignment', 'margin', 'subject_regex', 'classes')


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(_common.FaceConfig):
  """FaceConfig's crop (image_size, alignment, margin), plus where the subject and the classes come from."""
  subject_regex: str = DEFAULT_SUBJECT_REGEX
  classes: tuple[str, ...] = ()


def subject_pattern(regex: str) -> re.Pattern:
  """The compiled regex; ConfigError when it does not compile."""
  try:
    return re.compile(regex)
  except re.error as e:
    raise errors.ConfigError(f'subject_regex {regex!r} is not a regular expression ({e})',
                             'give a Python regex whose group `subject` (or first group) is the subject') from e


def subject_of(file_name: str, pattern: re.Pattern) -> str | None:
  """The subject in `file_name` by `pattern` (matched at the start): group `subject`, else group 1, else the match."""
  match = pattern.match(file_name)
  if match is None:
    return None
  if 'subject' in pattern.groupindex:
    subject = match.group('subject')
  else:
    subject = match.group(1) if pattern.groups else match.group(0)
  return subject or None


def _class_names(root: epath.Path, classes: tuple[str, ...]) -> tuple[str, ...]:
  folders = [p.name for p in _common.subfolders(root)]
  if not classes:
    if len(folders) < 2:
      raise errors.InputError(f'{root}: {len(folders)} class folder(s) {folders}; expected one folder per class (>= 2)',
                              'pass a folder laid out as <class>/<image>, e.g. happy/S005_001.png')
    return tuple(folders)
  missing = sorted(set(classes) - set(folders))
  if missing or len(set(classes)) != len(classes):
    raise errors.InputError(f'{root}: classes {list(classes)} name no folder for {missing} (or repeat a name); '
                            f'folders there: {folders}', 'give classes that are sub-folders of manual_dir, each once')
  return tuple(classes)


def make_config(config: str = '', *, manual_dir: str | None, image_size: int = 224, alignment: str = 'none',
                margin: float = 0.2, subject_regex: str = DEFAULT_SUBJECT_REGEX,
                classes: tuple[str, ...] | list[str] | str = ()) -> ImageFolderConfig:
  """The config of the tree at `manual_dir` built with these options (see the module docstring).

  `config` is the name from 'image_folder/NAME' and must be '' (the name is derived); `classes` may be a
  comma-separated string, as the command line gives it. The classes are read from the folders here, since the
  dataset's features (the label names) must be known before anything is built.
  """
  if config:
    raise errors.ConfigError(f'image_folder has no named configs, got {config!r}',
                             'use the name image_folder alone (data.config=\'\') and set options instead')
  if not manual_dir:
    raise errors.ConfigError('image_folder needs manual_dir: the folder of <class>/<image> files',
                             'pass --manual_dir=DIR to the build, or set config.data.manual_dir')
  root = epath.Path(manual_dir).expanduser().resolve()
  if not root.is_dir():
    raise errors.InputError(f'{root}: folder not found; expected the <class>/<image> tree of image_folder',
                            'pass the folder that holds one sub-folder per class as manual_dir')
  if isinstance(classes, str):
    classes = tuple(c.strip() for c in classes.split(',') if c.strip())
  subject_pattern(subject_regex)
  try:
    image_size, margin = int(image_size), float(margin)
  except (TypeError, ValueError) as e:
    raise errors.ConfigError(f'image_folder options image_size={image_size!r} / margin={margin!r}: not numbers',
                             'give image_size as an integer (pixels) and margin as a fraction') from e
  if image_size < 8:
    raise errors.ConfigError(f'image_folder option image_size={image_size}: too small',
                             'give the stored side in pixels, e.g. 48, 96 or 224')
  if alignment not in faces.ALIGNMENTS:
    raise errors.ConfigError(f'image_folder option alignment={alignment!r} is not one of {faces.ALIGNMENTS}',
                             "use 'none' (centre square), 'yunet' or 'haar' (a detector's face box), 'yunet_eyes' "
                             "(YuNet's box turned to level its eye landmarks)")
  values = dict(image_size=image_size, alignment=alignment, margin=margin, subject_regex=subject_regex,
                classes=_class_names(root, tuple(classes)))
  digest = hashlib.sha256(json.dumps({'root': str(root), **values}, sort_keys=True).encode()).hexdigest()[:10]
  name = f"{re.sub(r'[^a-z0-9]+', '_', root.name.lower()).strip('_') or 'images'}_{digest}"
  return ImageFolderConfig(name=name, description=f'{root}: {values}', **values)


def frames(root: epath.Path, config: ImageFolderConfig) -> list[_common.Frame]:
  """Every image of the tree, with its label and subject; raises, naming the file, before any image is decoded."""
  pattern = subject_pattern(config.subject_regex)
  out = []
  for name in config.classes:
    folder = _common.require(root / name, f'the folder of class {name!r}', is_dir=True)
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith('.'))
    for path in paths:
      if path.suffix.lower() not in EXTENSIONS:
        logging.warning('Not an image (by its extension), skipped: %s', path)
        continue
      subject = subject_of(path.name, pattern)
      if subject is None:
        raise errors.InputError(
            f'{path}: the file name does not match subject_regex {config.subject_regex!r}, so its subject is unknown',
            'rename the file, or pass a subject_regex (option subject_regex=...) whose group `subject` (or first '
            'group) matches every file name')
      out.append(_common.Frame(key=str(path.relative_to(root)), path=path,
                               fields={'label': name, 'subject': subject}))
  if not out:
    raise errors.InputError(f'{root}: no image files ({", ".join(EXTENSIONS)}) in the class folders {config.classes}',
                            'pass the folder that holds <class>/<image> files as manual_dir')
  return out


class ImageFolder(_common.FaceBuilder):
  """A `<class>/<image>` tree (see the module docstring)."""

  name = 'image_folder'
  VERSION = _common.VERSION
  RELEASE_NOTES = _common.RELEASE_NOTES
  BUILDER_CONFIG_CLS = ImageFolderConfig
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Pass a folder with one sub-folder per class as --manual_dir, with the options that built its config:
    DIR/{happy,sad,...}/<subject>_<anything>.png ...
  """

  @classmethod
  def make_config(cls, config: str = '', *, manual_dir: str | None, **options) -> ImageFolderConfig:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
      raise errors.ConfigError(f'image_folder: unknown option(s) {unknown}', f'the options are {list(OPTIONS)}')
    return make_config(config, manual_dir=manual_dir, **options)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if not isinstance(config, ImageFolderConfig) or not config.classes:
      raise errors.ConfigError('image_folder needs options made from its folder',
                               'build it with `python -m fn2en_jax.data.build image_folder --manual_dir=DIR` or a '
                               'run config with data.name=image_folder and data.manual_dir')
    return _common.dataset_info(self, description=__doc__, classes=config.classes, image_size=config.image_size,
                                homepage='', citation='')

  def _frames(self, root: epath.Path) -> dict[str, list[_common.Frame]]:
    return {'train': frames(root, self.builder_config)}
