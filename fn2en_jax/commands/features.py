"""A face net's features from the command line: one row per image, the named tap flattened in (H, W, C) order.

  python -m fn2en_jax.features --init=DIR --tap=pool5 --output=features.npy face1.png face2.jpg ...

Each image is read as RGB 0-255, resized to the net's input (`input_size` of DIR/face_net.json, or --size), scaled to
[-1, 1] like the training pipeline, and preprocessed by the net itself as stored with its weights.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np
from absl import app, flags
from PIL import Image

from fn2en_jax import cli, errors
from fn2en_jax.models import face_nets, preprocess

# None of them required=True: absl would then refuse to parse any other command's flags in a process that imports
# this module (the tests); main checks them instead.
_INIT = flags.DEFINE_string('init', None, 'A face-net directory (python -m fn2en_jax.convert).')
_TAP = flags.DEFINE_string('tap', None, 'The layer to read (vgg_face: pool1..pool5, fc6, fc7; dlib_resnet: '
                           'res1..res5, embedding; sface: conv_1..conv_14, embedding; facenet: conv2d_1a..'
                           'conv2d_4b, block35, mixed_6a, block17, mixed_7a, block8, prelogits, embedding; logits '
                           'where the classifier was kept).')
_OUTPUT = flags.DEFINE_string('output', None, 'The .npy file to write, shape (images, features).')
_SIZE = flags.DEFINE_integer('size', None, "Input side in pixels; default the face net's own.")
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per forward pass.')


def read_image(path: str, size: int) -> np.ndarray:
  """One image as (size, size, 3) float32 RGB 0-255; a file that is missing or not an image raises InputError."""
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB').resize((size, size), Image.BILINEAR), np.float32)
  except FileNotFoundError as e:
    raise errors.MissingInput(f'{path}: file not found', 'check the image paths after the flags') from e
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise errors.InputError(f'{path}: cannot decode the image ({e}); expected a PNG or JPEG file',
                            'leave the file out, or convert it to PNG') from e


def load_images(paths: Sequence[str], size: int) -> np.ndarray:
  """(N, size, size, 3) float32 in [-1, 1], the scale every model here is fed."""
  return preprocess.from_uint8(np.stack([read_image(p, size) for p in paths]))


def features(module, variables: dict, images: np.ndarray, tap: str, batch_size: int) -> np.ndarray:
  """The tap of every image, flattened: (N, prod(tap shape))."""
  apply = jax.jit(functools.partial(module.apply, train=False, tap=tap))
  rows = [np.asarray(apply(variables, images[i:i + batch_size]))
          for i in range(0, len(images), batch_size)]
  return np.concatenate(rows).reshape(len(images), -1)


def main(argv):
  missing = [f'--{f.name}' for f in (_INIT, _TAP, _OUTPUT) if not f.value]
  if missing:
    raise app.UsageError(f'{", ".join(missing)} missing: python -m fn2en_jax.features --init=DIR --tap=pool5 '
                         '--output=f.npy IMAGE...')
  paths = argv[1:]
  if not paths:
    raise app.UsageError('give one or more image files after the flags')
  meta = face_nets.read_meta(_INIT.value)
  size = _SIZE.value or meta.get('input_size')
  if not size:
    raise app.UsageError(f'{_INIT.value}/face_net.json has no input_size: pass --size')
  images = load_images(paths, size)  # every image is read before the net is loaded and compiled
  module, variables, meta = face_nets.load(_INIT.value)
  if _TAP.value == 'logits' and face_nets.CLASSIFIER[meta['model']] not in variables['params']:
    raise app.UsageError(f'{_INIT.value} was converted without its classifier: no logits '
                         '(python -m fn2en_jax.convert ... --keep_classifier)')
  np.save(_OUTPUT.value, features(module, variables, images, _TAP.value, _BATCH.value))


if __name__ == '__main__':
  cli.run_app(main)
