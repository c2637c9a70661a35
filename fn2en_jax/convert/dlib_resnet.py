"""dlib's ResNet face-recognition net (`dlib_face_recognition_resnet_model_v1.dat`) read without dlib.

The file is dlib's own serialisation of the network object (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h,
tensor.h). Because `add_layer` writes `version, subnet, details, state`, the stream holds the loss, then the
version of every layer from the top down to the input layer, then the input layer, then each layer's details and
state from the bottom up. Tag and skip layers write only their version (the wiring they stand for is in the C++
type, not in the file), so the architecture comes from `models/dlib_resnet.py`, and `to_flax` checks every
layer's kind, geometry and shape against it before mapping the weights.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np

from fn2en_jax import errors
from fn2en_jax.models import dlib_resnet

PACKAGE = 'face_recognition_models'
FILENAME = 'dlib_face_recognition_resnet_model_v1.dat'
INPUT_STD = 256.0  # input_rgb_image_sized::to_tensor divides by 256 after subtracting its mean
REMEDY = (f'pass --input=PATH/{FILENAME} as dlib releases it (or leave --input out to use the one '
          f'`pip install {PACKAGE}` ships); download it again if it is damaged')


def default_path() -> str:
  """The .dat shipped by the `face_recognition_models` package (found without importing it: its __init__ needs
  pkg_resources, which recent setuptools no longer ship)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise errors.MissingInput(f'no --input given, and the package {PACKAGE} (which ships {FILENAME}) is not '
                              'installed', f'pip install {PACKAGE}, or pass --input=PATH/{FILENAME}')
  return os.path.join(spec.submodule_search_locations[0], 'models', FILENAME)


class _Stream:
  """A cursor over dlib's serialisation primitives."""

  def __init__(self, data: bytes):
    self.data, self.pos = data, 0

  def _take(self, n: int) -> bytes:
    if self.pos + n > len(self.data):
      raise ValueError(f'dlib file truncated at byte {self.pos} (wanted {n} more)')
    chunk = self.data[self.pos:self.pos + n]
    self.pos += n
    return chunk

  def int(self) -> int:
    # A control byte (bit 7: negative, low nibble: byte count), then the magnitude little-endian.
    control = self._take(1)[0]
    value = int.from_bytes(self._take(control & 0x0F), 'little')
    return -value if control & 0x80 else value

  def float(self) -> float:
    # dlib's portable float: an integer mantissa and a binary exponent.
    mantissa = self.int()
    return math.ldexp(mantissa, self.int())

  def str(self) -> str:
    return self._take(self.int()).decode('latin-1')

  def bool(self) -> bool:
    ch = self._take(1)
    if ch not in (b'0', b'1'):
      raise ValueError(f'dlib file: expected a bool at byte {self.pos - 1}, got {ch!r}')
    return ch == b'1'

  def tensor(self) -> np.ndarray:
    self.expect_version(2, 'resizable_tensor')
    shape = tuple(self.int() for _ in range(4))
    # Unlike scalars, tensor data are raw little-endian float32.
    return np.frombuffer(self._take(4 * math.prod(shape)), '<f4').reshape(shape)

  def alias_tensor(self) -> tuple[int, ...]:
    self.expect_version(1, 'alias_tensor')
    return tuple(self.int() for _ in range(4))

  def expect_version(self, expected: int, what: str) -> None:
    version = self.int()
    if version != expected:
      raise ValueError(f'dlib file: {what} version {version} at byte {self.pos}, expected {expected}')

  def peek_str_prefix(self, prefix: str) -> bool:
    start = self.pos
    try:
      return self.str().startswith(prefix)
    except ValueError:
      return False
    finally:
      self.pos = start


def _read_details(s: _Stream) -> dict:
  """One layer's details, keyed by the version string each layer type writes first."""
  kind = s.str()
  if kind == 'con_4':
    params = s.tensor()
    geometry = dict(num_filters=s.int(), nr=s.int(), nc=s.int(), stride_y=s.int(), stride_x=s.int(),
                    padding_y=s.int(), padding_x=s.int())
    filters, biases = s.alias_tensor(), s.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
      s.float()
    params = params.reshape(-1)
    n = math.prod(filters)
    return dict(kind='con', filters=params[:n].reshape(filters), biases=params[n:n + math.prod(biases)],
                **geometry)
  if kind == 'affine_':
    params = s.tensor().reshape(-1)
    gamma, beta = s.alias_tensor(), s.alias_tensor()
    mode = s.int()
    if mode != 0:
      raise ValueError('dlib file: affine_ in FC_MODE; only CONV_MODE (per channel) is supported')
    n = math.prod(gamma)
    return dict(kind='affine', scale=params[:n], bias=params[n:n + math.prod(beta)])
  if kind in ('max_pool_2', 'avg_pool_2'):
    return dict(kind=kind[:-2], nr=s.int(), nc=s.int(), stride_y=s.int(), stride_x=s.int(), padding_y=s.int(),
                padding_x=s.int())
  if kind == 'fc_2':
    num_outputs, num_inputs = s.int(), s.int()
    params = s.tensor().reshape(-1)
    s.alias_tensor(), s.alias_tensor()
    bias_mode = s.int()
    for _ in range(4):
      s.float()
    weights = params[:num_inputs * num_outputs].reshape(num_inputs, num_outputs)
    return dict(kind='fc', weights=weights, biases=None if bias_mode else params[weights.size:])
  if kind in ('relu_', 'add_prev_'):
    return dict(kind=kind[:-1])
  raise ValueError(f'dlib file: unsupported layer {kind!r}')


def read(path: str) -> dict:
  """The layers of a dlib metric-learning net, bottom up: {'input': {...}, 'layers': [details, ...]}.

  A missing file raises errors.MissingInput, one that is not such a net errors.InputError, both naming it."""
  if not os.path.isfile(path):
    raise errors.MissingInput(f'{path}: file not found; expected dlib\'s {FILENAME}', REMEDY)
  try:
    return _read(path)
  except errors.UserError:
    raise
  except ValueError as e:
    raise errors.InputError(f'{path}: not a dlib face-recognition net ({e})', REMEDY) from e


def _read(path: str) -> dict:
  with open(path, 'rb') as f:
    s = _Stream(f.read())
  s.expect_version(1, 'add_loss_layer')
  loss = s.str()
  if loss != 'loss_metric_2':
    raise ValueError(f'{path}: a dlib net with loss {loss!r}, expected loss_metric_2 (a face descriptor net)')
  s.float(), s.float()  # margin, distance threshold
  # Versions from the top layer down: 2 for add_layer, 1 for tag/skip layers, 2 or 3 for the layer on the input.
  versions = []
  while True:
    versions.append(s.int())
    if versions[-1] in (2, 3) and s.peek_str_prefix('input_'):
      break
  if s.str() != 'input_rgb_image_sized':
    raise ValueError(f'{path}: expected an input_rgb_image_sized input layer')
  mean = (s.float(), s.float(), s.float())
  size = (s.int(), s.int())
  layers = []
  for depth, version in enumerate(reversed(versions)):
    if version == 1:  # a tag or skip layer: nothing but its version
      continue
    layers.append(_read_details(s))
    s.bool(), s.bool(), s.bool()  # setup called, gradient stale, getters disabled
    s.tensor(), s.tensor()  # x_grad, cached_output
    if depth == 0:
      s.tensor()  # grad_final
      if version == 3:
        s.int()  # sample_expansion_factor
    elif version == 2:
      s.tensor()  # params_grad
  if s.pos != len(s.data):
    raise ValueError(f'{path}: {len(s.data) - s.pos} bytes left after the network')
  return {'input': {'mean': mean, 'size': size}, 'layers': layers}


def _expect(layer: dict, kind: str, where: str, **geometry) -> dict:
  if layer['kind'] != kind or any(layer[k] != v for k, v in geometry.items()):
    got = {k: layer.get(k) for k in ('kind', *geometry)}
    raise ValueError(f'dlib net does not match models/dlib_resnet.py at {where}: expected {kind} {geometry}, got {got}')
  return layer


def _conv(layer: dict) -> dict:
  # dlib filters are (out, in, rows, cols) and applied as a cross-correlation, like Flax's (rows, cols, in, out).
  return {'kernel': np.transpose(layer['filters'], (2, 3, 1, 0)), 'bias': layer['biases']}


def _affine(layer: dict) -> dict:
  return {'scale': layer['scale'], 'bias': layer['bias']}


def to_flax(net: dict) -> tuple[dict, dict]:
  """(params, model_kwargs) of `DlibResNet` for a net `read` returned."""
  layers = iter(net['layers'])
  take = lambda kind, where, **geometry: _expect(next(layers), kind, where, **geometry)
  params = {'conv': _conv(take('con', 'conv', nr=7, nc=7, stride_y=2, stride_x=2, padding_y=0, padding_x=0)),
            'affine': _affine(take('affine', 'affine'))}
  take('relu', 'stem relu')
  take('max_pool', 'stem max_pool', nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
  for _, name, _, down, _ in dlib_resnet.units():
    stride, pad = (2, 0) if down else (1, 1)
    unit = {'conv_a': _conv(take('con', f'{name}/conv_a', nr=3, nc=3, stride_y=stride, stride_x=stride,
                                 padding_y=pad, padding_x=pad)),
            'affine_a': _affine(take('affine', f'{name}/affine_a'))}
    take('relu', f'{name}/relu_a')
    unit['conv_b'] = _conv(take('con', f'{name}/conv_b', nr=3, nc=3, stride_y=1, stride_x=1, padding_y=1,
                                padding_x=1))
    unit['affine_b'] = _affine(take('affine', f'{name}/affine_b'))
    if down:
      take('avg_pool', f'{name}/shortcut', nr=2, nc=2, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
    take('add_prev', f'{name}/add')
    take('relu', f'{name}/relu')
    params[name] = unit
  take('avg_pool', 'global avg_pool', nr=0, nc=0)
  fc = take('fc', 'fc')
  if fc['biases'] is not None:
    raise ValueError('dlib net: expected fc_no_bias as its last layer, found an fc with biases')
  params['fc'] = {'kernel': fc['weights']}
  if next(layers, None) is not None:
    raise ValueError('dlib net has layers after its fc layer')
  model_kwargs = {'embedding_dim': int(fc['weights'].shape[1]),
                  'input_mean': [float(m) for m in net['input']['mean']], 'input_std': INPUT_STD}
  return params, model_kwargs
