import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fn2en_jax.models import preprocess
from fn2en_jax.models.expnet import ExpNet
from fn2en_jax.models.vgg_face import VGGFace


def _shapes(model, size, **kwargs):
  variables = jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, jnp.zeros((2, size, size, 3)),
                                                train=False, **kwargs))
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, size, size, 3)), train=False, **kwargs), variables)
  return variables, out


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_vgg_face_224_conv_trunk_and_taps():
  model = VGGFace(num_classes=2622)
  variables, logits = _shapes(model, 224)
  params = variables['params']
  conv = {k: v for k, v in params.items() if k.startswith('conv')}
  assert len(conv) == 13
  assert _count(conv) == 14_714_688
  # fc6 reads the flattened 7x7x512 pool5.
  assert params['fc6']['kernel'].shape == (7 * 7 * 512, 4096)
  assert params['fc8']['kernel'].shape == (4096, 2622)
  assert logits.shape == (2, 2622)
  expected = {'pool1': (2, 112, 112, 64), 'pool2': (2, 56, 56, 128), 'pool3': (2, 28, 28, 256),
              'pool4': (2, 14, 14, 512), 'pool5': (2, 7, 7, 512), 'fc6': (2, 4096), 'fc7': (2, 4096)}
  for tap, shape in expected.items():
    assert _shapes(model, 224, tap=tap)[1].shape == shape, tap


def test_expnet_224_shapes_and_size():
  model = ExpNet(num_classes=8)
  variables, logits = _shapes(model, 224)
  assert logits.shape == (2, 8)
  assert set(variables['params']) == {'trunk', 'head'}
  assert _shapes(model, 224, tap='pool5')[1].shape == (2, 7, 7, 512)
  # Convs (no bias: BatchNorm follows) + BN scale/offset + FC 25088->256 + FC 256->8.
  widths = (3, 64, 128, 256, 512, 512)
  convs = sum(9 * i * o + 2 * o for i, o in zip(widths[:-1], widths[1:]))
  assert _count(variables['params']) == convs + 25088 * 256 + 256 + 256 * 8 + 8 == 10_337_096


def test_expnet_adapter_only_when_asked():
  model = ExpNet(num_classes=8, widths=(8, 8, 8, 8, 16), adapter_channels=32)
  variables, out = _shapes(model, 64, tap='adapter')
  assert out.shape == (2, 2, 2, 32)
  assert set(variables['params']) == {'trunk', 'adapter'}  # stage a never creates the head


def test_vgg_face_dropout_only_in_training():
  model = VGGFace(num_classes=3, width=1 / 16, fc_dim=256, dropout=0.5)
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = model.init({'params': jax.random.key(0)}, images, train=False)
  eval_a = model.apply(variables, images, train=False)
  eval_b = model.apply(variables, images, train=False)
  train = model.apply(variables, images, train=True, rngs={'dropout': jax.random.key(2)})
  np.testing.assert_array_equal(eval_a, eval_b)
  assert not np.allclose(eval_a, train)


def test_unknown_tap_is_an_error():
  with pytest.raises(ValueError, match='tap'):
    _shapes(VGGFace(num_classes=2, width=1 / 16), 32, tap='pool6')
  with pytest.raises(ValueError, match='tap'):
    _shapes(ExpNet(num_classes=2, widths=(4,) * 5), 32, tap='fc7')


def test_bfloat16_activations_keep_float32_parameters():
  for model in (ExpNet(num_classes=3, widths=(4,) * 5, dtype=jnp.bfloat16),
                VGGFace(num_classes=3, width=1 / 16, fc_dim=256, batch_norm=True, dtype=jnp.bfloat16)):
    images = jnp.ones((2, 32, 32, 3))
    variables = model.init({'params': jax.random.key(0)}, images, train=False)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert model.apply(variables, images, train=False).dtype == jnp.bfloat16


def test_the_one_input_scale_and_its_inverse():
  pixels = np.arange(256, dtype=np.uint8)
  x = preprocess.from_uint8(pixels)
  assert isinstance(x, np.ndarray) and x.dtype == np.float32  # NumPy stays NumPy (the input pipeline's workers)
  assert x[0] == -1.0 and x[-1] == 1.0 and np.all(np.diff(x) > 0)
  np.testing.assert_array_equal(preprocess.to_uint8(x), pixels)  # every pixel value comes back
  np.testing.assert_array_equal(preprocess.to_uint8(np.array([-3.0, 2.0])), [0, 255])  # clipped, not wrapped
  on_device = preprocess.from_uint8(jnp.asarray(pixels))
  assert isinstance(on_device, jax.Array)
  # Both sides compute q = x / 127.5 (0 <= q <= 2), then q - 1, in IEEE float32 (unit roundoff u = 2^-24), on any CPU.
  # NumPy divides: |fl(q) - q| <= u q <= 2u, and the subtraction adds at most u |q - 1| <= u: within 3u of exact.
  # XLA may multiply by the rounded reciprocal r = fl(1 / 127.5) = (1 + d) / 127.5, |d| <= u: x r is within 2u of q,
  # the product's rounding adds <= 2u and the subtraction <= u (an FMA rounds once: less): within 5u. So <= 8u apart,
  # to first order; the second-order terms (< 20 u^2) cannot push a difference past 8u: where |x| >= 0.5 both values
  # are multiples of u, and where |x| < 0.5 (q < 1.5) the same count gives under 6u.
  np.testing.assert_allclose(np.asarray(on_device), x, rtol=0, atol=8 * 2.0**-24)
