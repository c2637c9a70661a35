"""VGG-Face (Parkhi et al. 2015) from the files in circulation to `VGGFace` params.

Three formats, detected from the file's first bytes, each with its own conventions:

| format | file | kernels | dense | fc6 input order | channels |
| --- | --- | --- | --- | --- | --- |
| PyTorch (MatConvNet conversion) | vgg_face_dag.pth | (out, in, kh, kw) | (out, in) | C, H, W | RGB |
| Keras (keras-vggface) | rcmalli_vggface_tf_vgg16.h5 | (kh, kw, in, out) | (in, out) | H, W, C | BGR |
| Caffe (the original release) | VGG_FACE.caffemodel | (out, in, kh, kw) | (out, in) | C, H, W | BGR |

All three were trained on 0-255 pixels minus one mean. The converted net reads RGB whatever the file read: for a BGR
file the input channels of conv1_1 are reversed, which is exact. fc6's rows are reordered from the file's flatten
order to Flax's (H, W, C). The mean goes into the module's `input_mean` (models/preprocess.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import zipfile

import numpy as np

from fn2en_jax import errors
from fn2en_jax.convert import protobuf_wire as pw
from fn2en_jax.models import face_nets, vgg_face

# VGG-Face's training mean, R, G, B on the 0-255 scale (vgg_face_dag's meta; keras-vggface rounds it to 4 places).
MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)
CONVS = tuple(f'conv{block}_{i}' for block, (convs, _) in enumerate(vgg_face.BLOCKS, start=1)
              for i in range(1, convs + 1))
DENSES = ('fc6', 'fc7', 'fc8')


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a file stores the net."""
  name: str
  kernels_oihw: bool  # conv kernels (out, in, kh, kw) rather than (kh, kw, in, out)
  dense_out_in: bool  # dense weights (out, in) rather than (in, out)
  fc6_chw: bool  # fc6's input is pool5 flattened as (C, H, W) rather than (H, W, C)
  bgr: bool  # the first conv reads B, G, R


PYTORCH = Layout('pytorch', kernels_oihw=True, dense_out_in=True, fc6_chw=True, bgr=False)
KERAS = Layout('keras', kernels_oihw=False, dense_out_in=False, fc6_chw=False, bgr=True)
CAFFE = Layout('caffe', kernels_oihw=True, dense_out_in=True, fc6_chw=True, bgr=True)

Weights = dict[str, tuple[np.ndarray, np.ndarray]]  # layer -> (weight, bias), in the file's own layout

FILES = 'vgg_face_dag.pth, rcmalli_vggface_tf_vgg16.h5 or VGG_FACE.caffemodel'
REMEDY = (f'pass --input=FILE, one of {FILES} as released (docs/face_nets.md says where); download it again if it '
          'is damaged')


def read_pytorch(path: str) -> Weights:
  import torch  # imported here: only this format needs it
  # weights_only: a state dict of tensors is all a weights file needs; never unpickle arbitrary objects.
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    # torch's allow-list refused a global: the pickle would have built (and maybe run) arbitrary Python objects.
    raise errors.InputError(
        f'{path}: the file holds Python objects other than tensors, which are not loaded (nothing in it was run)',
        'use a .pth that holds only a state dict of tensors, like vgg_face_dag.pth; or convert the .h5 or '
        '.caffemodel release instead') from e
  except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
    raise errors.InputError(f'{path}: not a readable PyTorch file ({str(e).splitlines()[0]})', REMEDY) from e
  if not isinstance(state, dict):
    raise errors.InputError(f'{path}: expected a state dict (conv1_1.weight, ...), got a {type(state).__name__}',
                            REMEDY)
  return {name: (state[f'{name}.weight'].numpy(), state[f'{name}.bias'].numpy())
          for name in CONVS + DENSES if f'{name}.weight' in state}


def read_keras(path: str) -> Weights:
  import h5py  # imported here: only this format needs it
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise errors.InputError(f'{path}: not a readable HDF5 file ({e})', REMEDY) from e
  with f:
    # `model.save` nests the layers under model_weights; `save_weights` puts them at the root.
    root = f['model_weights'] if 'model_weights' in f else f
    weights = {}
    for name in CONVS + DENSES:
      if name in root:
        group = root[name]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs['weight_names']]
        kernel, bias = (np.asarray(group[n]) for n in names)  # Keras lists the kernel first
        weights[name] = (kernel, bias)
  return weights


def _blob(buf: memoryview) -> np.ndarray:
  # V1 BlobProto: num, channels, height, width = 1..4 (a legacy blob is always 4-D), data = 5.
  fields = pw.group(buf)
  shape = [fields[n][0][1] if n in fields else 1 for n in (1, 2, 3, 4)]
  data = pw.floats(fields.get(5, []))
  if data.size != math.prod(shape):
    raise ValueError(f'caffemodel: a blob of shape {shape} holds {data.size} values')
  return data.reshape(shape)


def read_caffe(path: str) -> Weights:
  with open(path, 'rb') as f:
    buf = memoryview(f.read())
  # NetParameter.layers = 2: V1LayerParameter, with name = 4 and blobs = 6.
  weights = {}
  for _, layer in pw.group(buf).get(2, []):
    fields = pw.group(layer)
    name = bytes(fields[4][0][1]).decode() if 4 in fields else ''
    if name in CONVS + DENSES:
      weight, bias = (_blob(blob) for _, blob in fields[6])
      # A dense layer's (out, in) are the last two dims of its blob, a bias is the last.
      weights[name] = (weight if name in CONVS else weight.reshape(weight.shape[-2:]), bias.reshape(-1))
  return weights


def detect(path: str) -> tuple[Layout, Weights]:
  """The file's layout and its weights, the format told by the file's first bytes."""
  if not os.path.isfile(path):
    raise errors.MissingInput(f'{path}: file not found; expected VGG-Face weights ({FILES})', REMEDY)
  with open(path, 'rb') as f:
    head = f.read(8)
  # torch.save's zip archive (PK: also when truncated, which is_zipfile misses), or a legacy pickle.
  if zipfile.is_zipfile(path) or head[:2] == b'PK' or head[:1] == b'\x80':
    layout, weights = PYTORCH, read_pytorch(path)
  elif head == b'\x89HDF\r\n\x1a\n':
    layout, weights = KERAS, read_keras(path)
  else:  # a protobuf message has no signature: the parse itself tells
    try:
      layout, weights = CAFFE, read_caffe(path)
    except (ValueError, KeyError, IndexError) as e:
      raise errors.InputError(f'{path}: not a PyTorch .pth, Keras .h5 or Caffe .caffemodel VGG-Face ({e})',
                              REMEDY) from e
  missing = [name for name in CONVS + DENSES[:2] if name not in weights]
  if missing:
    raise errors.InputError(f'{path}: read as {layout.name}, but layers {missing} are missing', REMEDY)
  return layout, weights


def to_flax(layout: Layout, weights: Weights, keep_classifier: bool = False) -> tuple[dict, dict, int]:
  """(params, model_kwargs, input_size) of `VGGFace` for weights in `layout`."""
  params = {}
  for name in CONVS:
    kernel, bias = weights[name]
    params[name] = {'kernel': kernel.transpose(2, 3, 1, 0) if layout.kernels_oihw else kernel, 'bias': bias}
  if layout.bgr:
    params[CONVS[0]]['kernel'] = params[CONVS[0]]['kernel'][:, :, ::-1, :]
  for name in DENSES:
    if name in weights and (name != face_nets.CLASSIFIER['vgg_face'] or keep_classifier):
      kernel, bias = weights[name]
      params[name] = {'kernel': kernel.T if layout.dense_out_in else kernel, 'bias': bias}
  channels = params[CONVS[-1]]['kernel'].shape[-1]
  fc6 = params['fc6']['kernel']
  side = math.isqrt(fc6.shape[0] // channels)
  if side * side * channels != fc6.shape[0]:
    raise ValueError(f'fc6 reads {fc6.shape[0]} values, not a square map of {channels} channels')
  if layout.fc6_chw:
    fc6 = fc6.reshape(channels, side, side, -1).transpose(1, 2, 0, 3).reshape(fc6.shape)
  params['fc6']['kernel'] = fc6
  width = params[CONVS[0]]['kernel'].shape[-1] / vgg_face.BLOCKS[0][1]
  model_kwargs = {'width': width, 'fc_dim': round(fc6.shape[1] / width), 'input_mean': list(MEAN_RGB),
                  'input_std': 1.0}
  return params, model_kwargs, side * 2 ** len(vgg_face.BLOCKS)
