"""Each VGG-Face format, written with random weights, converts exactly: VGGFace.apply against an independent forward
pass in the file's own conventions (PyTorch's layers for .pth; NumPy for .h5 and .caffemodel).

A thin net (width 1/16) at 64x64 keeps this fast while pool5 stays 2x2, so fc6's CHW/HWC row order matters.
"""


import h5py
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from fn2en_jax import convert
from fn2en_jax.convert import vgg_face as vgg_convert
from fn2en_jax.models import face_nets, vgg_face

WIDTH, SIZE, FC, CLASSES = 1 / 16, 64, 256, 10
MEAN_RGB = np.array([129.186279296875, 104.76238250732422, 93.59396362304688])
KERAS_MEAN_BGR = np.array([93.5940, 104.7624, 129.1863])  # keras_vggface.utils.preprocess_input(version=1)
CONVS = [(f'conv{b}_{i}', round(c * WIDTH)) for b, (n, c) in enumerate(vgg_face.BLOCKS, 1) for i in range(1, n + 1)]
POOL5 = CONVS[-1][1] * (SIZE // 32) ** 2


@pytest.fixture(scope='module')
def images():
  return np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3))  # RGB, 0-255


def _random_weights(rng, conv_layout: str, dense_layout: str) -> dict:
  """Random VGG weights in a file's own layout; He-scaled so that activations stay in range through 13 convs."""
  weights, channels = {}, 3
  for name, out in CONVS:
    shape = {'OIHW': (out, channels, 3, 3), 'HWIO': (3, 3, channels, out)}[conv_layout]
    weights[name] = (rng.normal(0, np.sqrt(2 / (9 * channels)), shape), rng.normal(0, 0.1, out))
    channels = out
  for name, (n_in, n_out) in {'fc6': (POOL5, FC), 'fc7': (FC, FC), 'fc8': (FC, CLASSES)}.items():
    shape = {'out_in': (n_out, n_in), 'in_out': (n_in, n_out)}[dense_layout]
    weights[name] = (rng.normal(0, np.sqrt(2 / n_in), shape), rng.normal(0, 0.1, n_out))
  return {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in weights.items()}


def numpy_vgg(weights: dict, bgr_minus_mean: np.ndarray, layout: str) -> dict:
  """VGG-16 in float64 NumPy in the file's own layout: NCHW with (out, in) dense (Caffe), or NHWC with (in, out)
  dense (Keras). Flattening pool5 in that layout is what gives fc6 its file's row order."""
  nchw = layout == 'NCHW'
  x = bgr_minus_mean.transpose(0, 3, 1, 2) if nchw else bgr_minus_mean
  spatial = (2, 3) if nchw else (1, 2)
  conv = 'nchwij,ocij->nohw' if nchw else 'nhwcij,ijco->nhwo'
  bias_shape = (1, -1, 1, 1) if nchw else (1, 1, 1, -1)
  for block, (n, _) in enumerate(vgg_face.BLOCKS, 1):
    for i in range(1, n + 1):
      w, b = weights[f'conv{block}_{i}']
      pad = [(0, 0)] * 4
      pad[spatial[0]] = pad[spatial[1]] = (1, 1)
      patches = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad), (3, 3), axis=spatial)
      x = np.maximum(np.einsum(conv, patches, w.astype(np.float64)) + b.reshape(bias_shape), 0)
    shape = list(x.shape)
    shape[spatial[1]:spatial[1] + 1] = [shape[spatial[1]] // 2, 2]
    shape[spatial[0]:spatial[0] + 1] = [shape[spatial[0]] // 2, 2]
    x = x.reshape(shape).max(axis=(spatial[0] + 1, spatial[1] + 2))
  out = {'pool5': x.transpose(0, 2, 3, 1) if nchw else x}
  x = x.reshape(len(x), -1)
  for name in ('fc6', 'fc7', 'fc8'):
    w, b = weights[name]
    x = x @ (w.T if nchw else w) + b
    out[name] = x = np.maximum(x, 0) if name != 'fc8' else x
  return {'pool5': out['pool5'], 'fc7': out['fc7'], 'logits': out['fc8']}


def converted(init: str, images_rgb: np.ndarray, taps=('pool5', 'fc7')) -> dict:
  module, variables, _ = face_nets.load(init)
  x = jnp.asarray(images_rgb / 127.5 - 1, jnp.float32)  # what the pipeline feeds every model
  return {tap: np.asarray(module.apply(variables, x, train=False, tap=tap)) for tap in taps}


def assert_close(ours: dict, reference: dict):
  for tap, got in ours.items():
    want = reference[tap]
    assert got.shape == want.shape, tap
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < 1e-5, f'{tap}: relative error {rel:.2e}'


class TorchVGGFace(torch.nn.Module):
  """vgg_face_dag's structure: named convs and fcs, pool5 flattened in PyTorch's (C, H, W) order."""

  def __init__(self):
    super().__init__()
    channels = 3
    for name, out in CONVS:
      setattr(self, name, torch.nn.Conv2d(channels, out, 3, padding=1))
      channels = out
    self.fc6, self.fc7, self.fc8 = torch.nn.Linear(POOL5, FC), torch.nn.Linear(FC, FC), torch.nn.Linear(FC, CLASSES)

  def forward(self, x):
    for block, (n, _) in enumerate(vgg_face.BLOCKS, 1):
      for i in range(1, n + 1):
        x = torch.relu(getattr(self, f'conv{block}_{i}')(x))
      x = torch.nn.functional.max_pool2d(x, 2, 2)
    pool5 = x
    x = torch.relu(self.fc7(torch.relu(self.fc6(torch.flatten(x, 1)))))
    return {'pool5': pool5.permute(0, 2, 3, 1).numpy(), 'fc7': x.numpy(), 'logits': self.fc8(x).numpy()}


def test_pytorch_pth_matches_torch(tmp_path, images):
  torch.manual_seed(0)
  net = TorchVGGFace().eval()
  torch.save(net.state_dict(), tmp_path / 'vgg_face_dag.pth')
  convert.convert_vgg_face(str(tmp_path / 'vgg_face_dag.pth'), str(tmp_path / 'out'))
  with torch.no_grad():
    reference = net(torch.from_numpy((images - MEAN_RGB).transpose(0, 3, 1, 2)).float())
  assert_close(converted(str(tmp_path / 'out'), images), reference)
  meta = face_nets.read_meta(str(tmp_path / 'out'))
  assert meta['model_kwargs']['width'] == WIDTH and meta['model_kwargs']['fc_dim'] == 4096
  assert meta['input_size'] == SIZE


def write_keras_h5(path, weights: dict):
  """keras-vggface's file: `save_weights` layout, one group per layer listing its weights' names."""
  with h5py.File(path, 'w') as f:
    names = [name for name, _ in CONVS] + ['pool5', 'flatten', 'fc6', 'fc7', 'fc8']
    f.attrs['layer_names'] = [n.encode() for n in names]
    for name in names:
      group = f.create_group(name)
      arrays = weights.get(name, ())
      weight_names = [f'{name}/{kind}:0' for kind, _ in zip(('kernel', 'bias'), arrays)]
      group.attrs['weight_names'] = [n.encode() for n in weight_names]
      for n, a in zip(weight_names, arrays):
        group[n] = a


def test_keras_h5_matches_numpy(tmp_path, images):
  weights = _random_weights(np.random.default_rng(1), 'HWIO', 'in_out')
  write_keras_h5(tmp_path / 'rcmalli_vggface_tf_vgg16.h5', weights)
  convert.convert_vgg_face(str(tmp_path / 'rcmalli_vggface_tf_vgg16.h5'), str(tmp_path / 'out'))
  reference = numpy_vgg(weights, images[..., ::-1] - KERAS_MEAN_BGR, 'NHWC')
  assert_close(converted(str(tmp_path / 'out'), images), reference)


def caffe_net_class():
  """NetParameter with V1 `layers`, built from a hand-written descriptor holding the fields of caffe.proto that a
  VGG_FACE.caffemodel uses, so that the file is written by protobuf itself, not by the reader under test."""
  f = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(name='caffe_v1_subset.proto', package='caffe')

  def message(name, fields):
    m = proto.message_type.add(name=name)
    for field_name, number, kind, label, type_name in fields:
      field = m.field.add(name=field_name, number=number, type=kind, label=label, type_name=type_name)
      if field_name == 'data':
        field.options.packed = True

  one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
  message('BlobProto', [('num', 1, f.TYPE_INT32, one, None), ('channels', 2, f.TYPE_INT32, one, None),
                        ('height', 3, f.TYPE_INT32, one, None), ('width', 4, f.TYPE_INT32, one, None),
                        ('data', 5, f.TYPE_FLOAT, many, None)])
  message('V1LayerParameter', [('bottom', 2, f.TYPE_STRING, many, None), ('top', 3, f.TYPE_STRING, many, None),
                               ('name', 4, f.TYPE_STRING, one, None), ('type', 5, f.TYPE_INT32, one, None),
                               ('blobs', 6, f.TYPE_MESSAGE, many, '.caffe.BlobProto')])
  message('NetParameter', [('name', 1, f.TYPE_STRING, one, None),
                           ('layers', 2, f.TYPE_MESSAGE, many, '.caffe.V1LayerParameter'),
                           ('input', 3, f.TYPE_STRING, many, None), ('input_dim', 4, f.TYPE_INT32, many, None)])
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName('caffe.NetParameter'))


def write_caffemodel(path, weights: dict):
  convolution, inner_product, relu, pooling = 4, 14, 18, 17  # V1LayerParameter.LayerType
  net = caffe_net_class()(name='VGG_FACE_16_layers', input=['data'], input_dim=[1, 3, SIZE, SIZE])
  bottom = 'data'
  for name in [n for n, _ in CONVS] + ['fc6', 'fc7', 'fc8']:
    w, b = weights[name]
    layer = net.layers.add(name=name, type=convolution if name.startswith('conv') else inner_product,
                           bottom=[bottom], top=[name])
    dims = w.shape if w.ndim == 4 else (1, 1) + w.shape  # legacy blobs are always 4-D
    layer.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3], data=w.ravel())
    layer.blobs.add(num=1, channels=1, height=1, width=len(b), data=b)
    net.layers.add(name=f'relu_{name}', type=relu, bottom=[name], top=[name])
    if name in ('conv1_2', 'conv2_2', 'conv3_3', 'conv4_3', 'conv5_3'):
      net.layers.add(name=f'pool_{name}', type=pooling, bottom=[name], top=[f'pool_{name}'])
    bottom = name
  with open(path, 'wb') as f:
    f.write(net.SerializeToString())


def test_caffemodel_matches_numpy(tmp_path, images):
  weights = _random_weights(np.random.default_rng(2), 'OIHW', 'out_in')
  write_caffemodel(tmp_path / 'VGG_FACE.caffemodel', weights)
  convert.convert_vgg_face(str(tmp_path / 'VGG_FACE.caffemodel'), str(tmp_path / 'out'), keep_classifier=True)
  reference = numpy_vgg(weights, images[..., ::-1] - MEAN_RGB[::-1], 'NCHW')
  assert_close(converted(str(tmp_path / 'out'), images, taps=('pool5', 'fc7', 'logits')), reference)


def test_classifier_dropped_unless_asked(tmp_path):
  weights = _random_weights(np.random.default_rng(3), 'OIHW', 'out_in')
  write_caffemodel(tmp_path / 'net.caffemodel', weights)
  layout, read = vgg_convert.detect(str(tmp_path / 'net.caffemodel'))
  assert layout == vgg_convert.CAFFE
  assert 'fc8' not in vgg_convert.to_flax(layout, read)[0]
  kept = vgg_convert.to_flax(layout, read, keep_classifier=True)[0]
  np.testing.assert_array_equal(kept['fc8']['kernel'], weights['fc8'][0].T)


def test_unknown_or_incomplete_files_raise(tmp_path):
  (tmp_path / 'notes.txt').write_text('not a face net')
  with pytest.raises(ValueError, match='not a PyTorch'):
    vgg_convert.detect(str(tmp_path / 'notes.txt'))
  torch.save({'conv1_1.weight': torch.zeros(4, 3, 3, 3), 'conv1_1.bias': torch.zeros(4)}, tmp_path / 'part.pth')
  with pytest.raises(ValueError, match='missing'):
    vgg_convert.detect(str(tmp_path / 'part.pth'))
