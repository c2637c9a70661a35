"""The jaxpr-to-ONNX translation (fn2en_jax/jaxpr_onnx.py) run by ONNX Runtime against JAX on the same inputs: each
layer kind, any batch size, contractions other than a dense layer's, and the primitives outside the translated set
refused by name. The nets themselves: the tiny run's student and VGG face stage in tests/test_export.py, dlib's
converted ResNet against dlib's own descriptors in tests/test_dlib_resnet.py."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime
import pytest
import roundoff
from flax import linen as nn

from fn2en_jax import errors, jaxpr_onnx


def _run(model, x):
  session = onnxruntime.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
  return session.run(None, {session.get_inputs()[0].name: x})[0]


class _Layers(nn.Module):
  """One of each layer kind the translation handles, at awkward settings: asymmetric padding, strides, grouped
  channels, an explicit pad, SAME max pooling, a dense layer on the flattened map."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 2), (0, 1)))(x))
    x = nn.Conv(8, (3, 3), feature_group_count=2, kernel_dilation=(2, 1), padding='SAME')(x)
    x = jnp.pad(x, ((0, 0), (1, 0), (0, 2), (0, 0)))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    x = nn.BatchNorm(use_running_average=True)(x)
    return nn.Dense(5)(x.reshape(x.shape[0], -1))


def test_each_layer_kind_at_any_batch_size():
  module = _Layers()
  x = np.random.default_rng(1).uniform(-1, 1, (5, 17, 19, 3)).astype(np.float32)
  variables = module.init(jax.random.key(0), x[:1])
  stats = variables['batch_stats']['BatchNorm_0']  # statistics that are not the identity
  variables = {**variables, 'batch_stats': {'BatchNorm_0': {'mean': stats['mean'] + 0.3, 'var': stats['var'] * 2}}}
  logits = lambda v, images: module.apply(v, images)
  model = jaxpr_onnx.convert(lambda images: logits(variables, images),
                             jax.ShapeDtypeStruct((1, 17, 19, 3), np.float32), output_name='logits')
  assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == ['N', 17, 19, 3]
  assert {'Conv', 'MaxPool', 'Pad', 'MatMul'} <= {n.op_type for n in model.graph.node}
  # Every computation on the parameters alone was done at export (BatchNorm's scale and shift, the kernels'
  # layout): no node reads initializers only.
  constants = {t.name for t in model.graph.initializer}
  assert not [n.name for n in model.graph.node if n.input and all(i in constants for i in n.input)]
  assert constants <= {i for n in model.graph.node for i in n.input}  # and what they were folded from is gone
  expected, error = roundoff.bound(logits, variables, x)
  for n in (1, 2, 5):
    got = _run(model, x[:n])
    assert got.shape == (n, 5) and got.dtype == np.float32
    roundoff.assert_within(got, expected[:n], 2 * error)


def test_a_batched_contraction_and_a_broadcast_from_the_batch():
  w = np.random.default_rng(2).normal(size=(3, 4, 5)).astype(np.float32)

  def fn(x):  # x: (N, 3, 4): a contraction with batch dimensions (Einsum), a broadcast of a per-example value
    y = jax.lax.dot_general(x, w, (((2,), (1,)), ((1,), (0,))))  # (3, N, 5)
    return jnp.transpose(y, (1, 0, 2)) * jnp.sum(x, axis=(1, 2))[:, None, None] - \
        jnp.exp(-jnp.abs(y)).mean(axis=(0, 2))[:, None, None]

  model = jaxpr_onnx.convert(fn, jax.ShapeDtypeStruct((1, 3, 4), np.float32), output_name='y')
  x = np.random.default_rng(3).normal(size=(6, 3, 4)).astype(np.float32)
  expected, error = roundoff.bound(fn, x)  # the sums in another order, exp by another implementation
  roundoff.assert_within(_run(model, x), expected, 2 * error)
  assert 'Einsum' in {n.op_type for n in model.graph.node}


def test_a_primitive_outside_the_translated_set_is_named():
  with pytest.raises(errors.ConfigError, match="does not translate the JAX primitive 'cumsum'") as info:
    jaxpr_onnx.convert(lambda x: jnp.cumsum(x, axis=1), jax.ShapeDtypeStruct((1, 4), np.float32))
  assert 'saved_model' in info.value.remedy


def test_without_the_onnx_package_the_remedy_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'onnx', None)  # what `import onnx` meets where it is not installed
  with pytest.raises(errors.ConfigError, match='needs the onnx package') as info:
    jaxpr_onnx.convert(jnp.tanh, jax.ShapeDtypeStruct((1, 4), np.float32))
  assert info.value.remedy == "pip install 'fn2en-jax[onnx]'"
