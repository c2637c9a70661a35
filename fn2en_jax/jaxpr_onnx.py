"""A JAX function written as an ONNX graph, from its jaxpr: what `python -m fn2en_jax.export --format=onnx` writes.

ONNX is what deployments ask for first (ONNX Runtime on servers, phones and browsers; OpenCV's DNN module). The two
ready-made routes do not fit this project: jax2onnx pins orbax-checkpoint below 0.11.37 (this project runs on 0.12),
and tf2onnx reads TensorFlow graphs, while jax2tf's SavedModel holds the computation as one `XlaCallModule` op of
StableHLO that tf2onnx does not convert. So the jaxpr of the function (the primitives JAX traced it into) is
translated here, one ONNX node or a few per primitive, with the `onnx` package writing the format. The nets here use
a small set of primitives (convolutions, matrix products, elementwise arithmetic, reductions, slicing, padding,
pooling); one outside that set stops the export naming it, rather than writing a graph that computes something
else.

How it stays exact:
- The function is traced with a symbolic batch dimension (`jax.export.symbolic_shape`), so the graph takes any
  batch size; a dimension that is the batch passes through Reshape as 0 ("copy this dimension") and through Slice
  as "to the end".
- Every equation whose inputs are all constants (the net's parameters, literals) is evaluated here, by JAX, and
  stored as one initializer: BatchNorm's scale and shift, transposed kernels. What runs in the graph is what depends
  on the images.
- JAX's convolutions and poolings here are NHWC; ONNX's are NCHW: a Transpose on each side, the kernels transposed
  once, at export.
- Nested calls (jit, custom_jvp and custom_vjp rules such as ReLU's and the training layers' own gradients) are
  inlined: inference needs only their primal computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax import extend as jex

from fn2en_jax import errors

OPSET = 18
INT64_MAX = np.iinfo(np.int64).max
# Parameters of the call-like primitives that hold the called jaxpr (the primal computation for custom rules).
_CALLS = {'jit': 'jaxpr', 'pjit': 'jaxpr', 'closed_call': 'call_jaxpr', 'core_call': 'call_jaxpr',
          'custom_jvp_call': 'call_jaxpr', 'custom_vjp_call': 'call_jaxpr', 'custom_vjp_call_jaxpr': 'fun_jaxpr',
          'remat': 'jaxpr', 'checkpoint': 'jaxpr'}
_ELEMENTWISE = {'add': 'Add', 'sub': 'Sub', 'mul': 'Mul', 'div': 'Div', 'max': 'Max', 'min': 'Min', 'exp': 'Exp',
                'log': 'Log', 'neg': 'Neg', 'abs': 'Abs', 'sqrt': 'Sqrt', 'tanh': 'Tanh', 'logistic': 'Sigmoid',
                'erf': 'Erf', 'pow': 'Pow', 'gt': 'Greater', 'lt': 'Less', 'ge': 'GreaterOrEqual',
                'le': 'LessOrEqual', 'eq': 'Equal', 'stop_gradient': 'Identity', 'copy': 'Identity',
                'copy_p': 'Identity'}
# JAX's and/or/not are bitwise on integers; ONNX's are logical, on booleans only.
_LOGICAL = {'and': 'And', 'or': 'Or', 'not': 'Not'}


def _onnx():
  try:
    import onnx  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise errors.ConfigError('--format=onnx needs the onnx package, which is not installed',
                             "pip install 'fn2en-jax[onnx]'") from e
  return onnx


def _is_static(shape) -> bool:
  return all(isinstance(d, (int, np.integer)) for d in shape)


def _same_dim(a, b) -> bool:
  """Whether two (possibly symbolic) dimensions are provably equal."""
  try:
    return bool(a == b)
  except Exception:  # pylint: disable=broad-except  # JAX's InconclusiveDimensionOperation: not provably equal
    return False


class _Graph:
  """The ONNX graph being written: nodes, initializers and the name of each jaxpr variable's value."""

  def __init__(self):
    self.onnx = _onnx()
    self.nodes, self.initializers = [], []
    self.constants: dict[str, np.ndarray] = {}  # names of the initializers, with their values (for folding)
    self._count = 0

  def name(self, hint: str) -> str:
    self._count += 1
    return f'{hint}_{self._count}'

  def constant(self, value, hint: str = 'c') -> str:
    value = np.asarray(value)
    name = self.name(hint)
    self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
    self.constants[name] = value
    return name

  def ints(self, values: Sequence[int], hint: str = 'shape') -> str:
    return self.constant(np.asarray(values, np.int64), hint)

  def node(self, op: str, inputs: Sequence[str], **attrs) -> str:
    out = self.name(op.lower())
    self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
    return out


def _dtype(graph: _Graph, dtype) -> int:
  return graph.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _fold(eqn, values: list[np.ndarray]) -> list[np.ndarray] | None:
  """The outputs of `eqn` on constant inputs, computed by JAX now; None where the outputs' shapes are symbolic."""
  if not all(_is_static(v.aval.shape) for v in eqn.outvars):
    return None
  if eqn.primitive.name in _CALLS:
    closed = eqn.params[_CALLS[eqn.primitive.name]]
    outs = jex.core.jaxpr_as_fun(closed)(*values)
  else:
    outs = eqn.primitive.bind(*values, **eqn.params)
    outs = outs if eqn.primitive.multiple_results else [outs]
  return [np.asarray(o) for o in outs]


def _reshape_dims(shape, in_shape) -> list[int]:
  """ONNX Reshape's target for a jaxpr shape that may hold the symbolic batch: 0 copies the input's dimension at
  that position (the batch stays where it was), -1 is inferred (at most one)."""
  dims = []
  for i, d in enumerate(shape):
    if isinstance(d, (int, np.integer)):
      dims.append(int(d))
    elif i < len(in_shape) and _same_dim(in_shape[i], d):
      dims.append(0)
    else:
      dims.append(-1)
  if dims.count(-1) > 1:
    raise NotImplementedError(f'a reshape to {shape} with more than one symbolic dimension')
  return dims


def _to_nchw(graph, x, spec) -> str:
  return graph.node('Transpose', [x], perm=[int(d) for d in spec])


def _from_nchw(graph, y, spec) -> str:
  return graph.node('Transpose', [y], perm=[int(d) for d in np.argsort(spec)])


def _transposed_constant(graph, name, perm) -> str:
  if name in graph.constants:
    return graph.constant(np.transpose(graph.constants[name], perm), 'kernel')
  return graph.node('Transpose', [name], perm=[int(d) for d in perm])


def _conv(graph, eqn, lhs, rhs) -> str:
  p = eqn.params
  if any(d != 1 for d in p['lhs_dilation']) or p['batch_group_count'] != 1:
    raise NotImplementedError('a transposed or batch-grouped convolution')
  dn = p['dimension_numbers']
  pads = [lo for lo, _ in p['padding']] + [hi for _, hi in p['padding']]
  y = graph.node('Conv', [_to_nchw(graph, lhs, dn.lhs_spec), _transposed_constant(graph, rhs, dn.rhs_spec)],
                 strides=list(p['window_strides']), dilations=list(p['rhs_dilation']), pads=[int(v) for v in pads],
                 group=int(p['feature_group_count']))
  return _from_nchw(graph, y, dn.out_spec)


def _max_pool(graph, eqn, x) -> str:
  p = eqn.params
  rank = len(p['window_dimensions'])
  # The window over NHWC: batch and channels untouched, pooling over the spatial dimensions in between.
  if p['window_dimensions'][0] != 1 or p['window_dimensions'][-1] != 1 or p['window_strides'][0] != 1 or \
      p['window_strides'][-1] != 1 or any(d != 1 for d in (*p['base_dilation'], *p['window_dilation'])) or \
      any(v != 0 for v in (*p['padding'][0], *p['padding'][-1])):
    raise NotImplementedError(f'a max pooling window {p["window_dimensions"]} that is not over the NHWC spatial dims')
  spec = (0, rank - 1, *range(1, rank - 1))
  pads = [lo for lo, _ in p['padding'][1:-1]] + [hi for _, hi in p['padding'][1:-1]]
  y = graph.node('MaxPool', [_to_nchw(graph, x, spec)], kernel_shape=list(p['window_dimensions'][1:-1]),
                 strides=list(p['window_strides'][1:-1]), pads=[int(v) for v in pads])
  return _from_nchw(graph, y, spec)


def _dot(graph, eqn, lhs, rhs) -> str:
  (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
  lrank, rrank = len(eqn.invars[0].aval.shape), len(eqn.invars[1].aval.shape)
  if not lb and not rb and tuple(lc) == (lrank - 1,) and tuple(rc) == (0,) and rrank == 2:
    return graph.node('MatMul', [lhs, rhs])  # the dense layers: the common case, which every runtime has
  letters = iter('abcdefghijklmnopqrstuvwxyz')
  left = [next(letters) for _ in range(lrank)]
  right = [next(letters) for _ in range(rrank)]
  for l, r in (*zip(lc, rc), *zip(lb, rb)):
    right[r] = left[l]
  out = [left[d] for d in lb] + [left[d] for d in range(lrank) if d not in lc and d not in lb] + \
        [right[d] for d in range(rrank) if d not in rc and d not in rb]
  return graph.node('Einsum', [lhs, rhs], equation=f"{''.join(left)},{''.join(right)}->{''.join(out)}")


def _broadcast(graph, eqn, x) -> str:
  """The operand reshaped to the output's rank (its dimensions where `broadcast_dimensions` puts them, 1s between),
  then expanded to the output's static dimensions."""
  shape, dims = eqn.params['shape'], eqn.params['broadcast_dimensions']
  in_shape = eqn.invars[0].aval.shape
  target = [1] * len(shape)
  for i, d in enumerate(dims):
    # A symbolic dimension keeps its input's size: 0 copies it where it stays in place, -1 infers it elsewhere.
    target[d] = int(in_shape[i]) if isinstance(in_shape[i], (int, np.integer)) else (0 if i == d else -1)
  if len(in_shape) != len(shape) or list(dims) != list(range(len(shape))):
    x = graph.node('Reshape', [x, graph.ints(target)])
  # A symbolic dimension that the operand lacks stays 1 here, which the elementwise consumer broadcasts.
  return graph.node('Expand', [x, graph.ints([int(d) if isinstance(d, (int, np.integer)) else 1 for d in shape])])


def _slice(graph, eqn, x) -> str:
  p = eqn.params
  starts, limits = p['start_indices'], p['limit_indices']
  in_shape = eqn.invars[0].aval.shape
  ends = []
  for i, limit in enumerate(limits):
    if isinstance(limit, (int, np.integer)):
      ends.append(int(limit))
    elif _same_dim(limit, in_shape[i]):  # the batch, to its end
      ends.append(INT64_MAX)
    else:
      raise NotImplementedError(f'a slice to {limit} of a dimension {in_shape[i]}')
  steps = list(p['strides']) if p['strides'] else [1] * len(starts)
  return graph.node('Slice', [x, graph.ints(starts), graph.ints(ends), graph.ints(range(len(starts))),
                              graph.ints(steps)])


def _pad(graph, eqn, x, value) -> str:
  config = eqn.params['padding_config']
  if any(interior for _, _, interior in config):
    raise NotImplementedError('an interior (dilating) pad')
  pads = [lo for lo, _, _ in config] + [hi for _, hi, _ in config]
  return graph.node('Pad', [x, graph.ints(pads), value], mode='constant')


def _reduce(graph, op, eqn, x) -> str:
  return graph.node(op, [x, graph.ints(eqn.params['axes'])], keepdims=0)


def _emit(graph, eqn, ins: list[str]) -> list[str]:
  """The ONNX value names of `eqn`'s outputs, its nodes appended to `graph`."""
  name = eqn.primitive.name
  if name in _ELEMENTWISE:
    return [graph.node(_ELEMENTWISE[name], ins)]
  if name in _LOGICAL:
    if eqn.invars[0].aval.dtype != np.bool_:
      raise NotImplementedError(f'the JAX primitive {name!r} on {eqn.invars[0].aval.dtype} (bitwise)')
    return [graph.node(_LOGICAL[name], ins)]
  if name == 'convert_element_type':
    return [graph.node('Cast', ins, to=_dtype(graph, eqn.params['new_dtype']))]
  if name == 'rsqrt':
    return [graph.node('Reciprocal', [graph.node('Sqrt', ins)])]
  if name == 'integer_pow':
    return [graph.node('Pow', [ins[0], graph.constant(np.asarray(eqn.params['y'], eqn.invars[0].aval.dtype))])]
  if name == 'square':
    return [graph.node('Mul', [ins[0], ins[0]])]
  if name == 'select_n' and len(ins) == 3:  # select_n(pred, on_false, on_true)
    return [graph.node('Where', [ins[0], ins[2], ins[1]])]
  if name == 'reduce_sum':
    return [_reduce(graph, 'ReduceSum', eqn, ins[0])]
  if name == 'reduce_max':
    return [_reduce(graph, 'ReduceMax', eqn, ins[0])]
  if name == 'reduce_min':
    return [_reduce(graph, 'ReduceMin', eqn, ins[0])]
  if name == 'reshape':
    if eqn.params.get('dimensions'):
      raise NotImplementedError('a reshape with a dimension order')
    dims = _reshape_dims(eqn.params['new_sizes'], eqn.invars[0].aval.shape)
    return [graph.node('Reshape', [ins[0], graph.ints(dims)])]
  if name == 'squeeze':
    return [graph.node('Squeeze', [ins[0], graph.ints(eqn.params['dimensions'])])]
  if name == 'expand_dims':
    return [graph.node('Unsqueeze', [ins[0], graph.ints(eqn.params['dimensions'])])]
  if name == 'transpose':
    return [graph.node('Transpose', ins, perm=[int(d) for d in eqn.params['permutation']])]
  if name == 'concatenate':
    return [graph.node('Concat', ins, axis=int(eqn.params['dimension']))]
  if name == 'broadcast_in_dim':
    return [_broadcast(graph, eqn, ins[0])]
  if name == 'slice':
    return [_slice(graph, eqn, ins[0])]
  if name == 'pad':
    return [_pad(graph, eqn, *ins)]
  if name == 'conv_general_dilated':
    return [_conv(graph, eqn, *ins)]
  if name == 'reduce_window_max':
    return [_max_pool(graph, eqn, ins[0])]
  if name == 'dot_general':
    return [_dot(graph, eqn, *ins)]
  raise NotImplementedError(f'the JAX primitive {name!r}')


def _translate(graph: _Graph, jaxpr, consts: Sequence[Any], ins: list[str]) -> list[str]:
  env: dict[Any, str] = {}

  def read(atom) -> str:
    if isinstance(atom, jex.core.Literal):
      return graph.constant(np.asarray(atom.val, atom.aval.dtype), 'literal')
    return env[atom]

  for var, value in zip(jaxpr.constvars, consts):
    env[var] = graph.constant(np.asarray(value), 'param')
  env.update(zip(jaxpr.invars, ins))
  for eqn in jaxpr.eqns:
    names = [read(a) for a in eqn.invars]
    folded = None
    if all(n in graph.constants for n in names):
      folded = _fold(eqn, [graph.constants[n] for n in names])
    if folded is not None:
      outs = [graph.constant(v, eqn.primitive.name) for v in folded]
    elif eqn.primitive.name in _CALLS:
      closed = eqn.params[_CALLS[eqn.primitive.name]]
      outs = _translate(graph, closed.jaxpr, closed.consts, names)
    else:
      try:
        outs = _emit(graph, eqn, names)
      except NotImplementedError as e:
        raise errors.ConfigError(f'the ONNX export does not translate {e} (in {eqn})'[:400],
                                 'export --format=saved_model or tflite instead') from e
    env.update(zip(eqn.outvars, outs))
  return [read(a) for a in jaxpr.outvars]


def convert(fn: Callable, example: jax.ShapeDtypeStruct, *, input_name: str = 'images',
            output_name: str = 'probabilities', batch: str = 'N', doc: str = ''):
  """The ONNX model of `fn` (one array in, one out; closed over its parameters) for inputs shaped like `example`
  with any batch size: dimension 0 of `example` is replaced by the symbolic `batch`."""
  onnx = _onnx()
  (symbolic,) = jax.export.symbolic_shape(batch)
  spec = jax.ShapeDtypeStruct((symbolic, *example.shape[1:]), example.dtype)
  closed = jax.make_jaxpr(fn)(spec)
  graph = _Graph()
  (out,) = _translate(graph, closed.jaxpr, closed.consts, [input_name])
  graph.nodes.append(onnx.helper.make_node('Identity', [out], [output_name], name=output_name))
  # Only the folded results are read: the constants they were folded from stay out of the file.
  read = {name for node in graph.nodes for name in node.input}
  initializers = [t for t in graph.initializers if t.name in read]
  (out_aval,) = closed.out_avals
  dims = lambda shape: [batch if not isinstance(d, (int, np.integer)) else int(d) for d in shape]
  model = onnx.helper.make_model(
      onnx.helper.make_graph(
          graph.nodes, 'fn2en_jax', [onnx.helper.make_tensor_value_info(input_name, _dtype(graph, example.dtype),
                                                                        dims(spec.shape))],
          [onnx.helper.make_tensor_value_info(output_name, _dtype(graph, out_aval.dtype), dims(out_aval.shape))],
          initializer=initializers, doc_string=doc),
      opset_imports=[onnx.helper.make_opsetid('', OPSET)], producer_name='fn2en_jax')
  model.ir_version = min(model.ir_version, 9)  # what ONNX Runtime releases of the last two years read
  onnx.checker.check_model(model)
  return model

