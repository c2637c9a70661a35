"""models/layers.py: the fast pooling and convolution give Flax's values and gradients, and so does a whole model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from roundoff import U, gamma
from roundoff import assert_within as _assert_within

from fn2en_jax.models import expnet, layers

# Where two computations of the same numbers differ in the order of their float32 sums, they are compared within the
# classical bound (Higham, Accuracy and Stability of Numerical Algorithms, 3.1 and 4.2): a sum of n products
# computed in any order is within gamma(n) = n u / (1 - n u) times the sum of the products' magnitudes of the exact
# value, u = 2**-24, so two orders are within twice that. A sum of one term is exact. (U, gamma and the check:
# tests/roundoff.py.)


def _max_pool(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


@pytest.mark.parametrize('shape', [(2, 6, 8, 3), (1, 7, 5, 2), (2, 1, 1, 3), (1, 3, 1, 2)])
def test_max_pool_values_and_gradients(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  cotangent = jax.random.normal(jax.random.key(1), _max_pool(x).shape)
  np.testing.assert_array_equal(layers.max_pool_2x2(x), _max_pool(x))
  grad = lambda pool: jax.grad(lambda x: jnp.vdot(pool(x), cotangent))(x)
  np.testing.assert_array_equal(grad(layers.max_pool_2x2), grad(_max_pool))


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
  # Small integers: most windows hold two or more equal maxima. nn.max_pool's select_and_scatter gives the whole
  # gradient to the first in row-major order; autodiff of jnp.max would split it, and so differ here.
  x = jax.random.randint(jax.random.key(2), (3, 8, 8, 4), 0, 2).astype(jnp.float32)
  cotangent = jax.random.normal(jax.random.key(3), (3, 4, 4, 4))
  grad = lambda pool: jax.grad(lambda x: jnp.vdot(pool(x), cotangent))(x)
  expected = grad(_max_pool)
  np.testing.assert_array_equal(grad(layers.max_pool_2x2), expected)
  split = grad(lambda x: x.reshape(3, 4, 2, 4, 2, 4).max(axis=(2, 4)))
  assert not np.allclose(split, expected), 'the input has no ties: the test proves nothing'
  # Every window passes its gradient on whole, to exactly one position.
  windows = np.asarray(grad(layers.max_pool_2x2) != 0).reshape(3, 4, 2, 4, 2, 4).sum(axis=(2, 4))
  assert windows.max() == 1


@pytest.mark.parametrize('shape', [(2, 9, 6, 3), (1, 1, 4, 2)])
def test_avg_pool_values_and_gradients(shape):
  x = jax.random.normal(jax.random.key(4), shape)
  avg = lambda x: nn.avg_pool(x, (2, 2), strides=(2, 2))
  cotangent = jax.random.normal(jax.random.key(5), avg(x).shape)
  # A mean of the 4 values of a window, summed in some order (a scaling by 1/4 is exact): within 2 gamma(4) of
  # the mean of their magnitudes.
  _assert_within(layers.avg_pool_2x2(x), avg(x), 2 * gamma(4) * avg(jnp.abs(x)))
  # Each input is in one window: its gradient is a quarter of one cotangent, exactly, either way.
  grad = lambda pool: jax.grad(lambda x: jnp.vdot(pool(x), cotangent))(x)
  np.testing.assert_array_equal(grad(layers.avg_pool_2x2), grad(avg))


@pytest.mark.parametrize('kernel,padding', [((3, 3), 1), ((1, 1), 0), ((3, 3), 0), ((3, 2), ((2, 0), (1, 1)))])
def test_conv_values_and_gradients(kernel, padding):
  """nn.Conv with layers.conv_general_dilated against plain nn.Conv: output, input gradient, kernel gradient."""
  x, features = jax.random.normal(jax.random.key(6), (2, 9, 7, 5)), 6
  plain = nn.Conv(features, kernel, padding=padding)
  fast = nn.Conv(features, kernel, padding=padding, conv_general_dilated=layers.conv_general_dilated)
  variables = plain.init(jax.random.key(7), x)
  cotangent = jax.random.normal(jax.random.key(8), plain.apply(variables, x).shape)

  def grads(module, variables=variables, x=x, cotangent=cotangent):
    return jax.grad(lambda v, x: jnp.vdot(module.apply(v, x), cotangent), argnums=(0, 1))(variables, x)

  # Every value and gradient is a sum of products (a kernel tap times an input, a cotangent times an input or a
  # tap, plus the bias); the same sums over magnitudes, the plain layer on |variables|, |x| and |cotangent|, give
  # each element's bound, for n up to the longest of the sums: kh kw (Cin + Cout) + 1 for a value or an input
  # gradient, N H_out W_out for a kernel gradient.
  n = kernel[0] * kernel[1] * (x.shape[3] + features) + 1 + cotangent.size // features
  magnitudes = jax.tree.map(jnp.abs, variables), jnp.abs(x), jnp.abs(cotangent)
  _assert_within(fast.apply(variables, x), plain.apply(variables, x),
                 2 * gamma(n) * plain.apply(*magnitudes[:2]), 'values')
  jax.tree.map(lambda a, b, m: _assert_within(a, b, 2 * gamma(n) * m, 'gradients'), grads(fast), grads(plain),
               grads(plain, *magnitudes))


def test_conv_kernel_gradient_against_numpy():
  """An independent count: dW[i, j] = sum over n, h, w of x_padded[n, h+i, w+j, :]^T g[n, h, w, :]."""
  rng = np.random.default_rng(0)
  x, w = rng.normal(size=(2, 5, 6, 3)), rng.normal(size=(3, 3, 3, 4))
  g = rng.normal(size=(2, 5, 6, 4))
  dw = jax.grad(lambda w: jnp.vdot(layers.conv2d(jnp.asarray(x, jnp.float32), w, ((1, 1), (1, 1))), g))(
      jnp.asarray(w, jnp.float32))
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  taps = lambda x, g: np.stack([np.stack([np.einsum('nhwc,nhwd->cd', x[:, i:i + 5, j:j + 6], g) for j in range(3)])
                                for i in range(3)])
  expected = taps(xp, g)  # float64
  # float32 rounds x and g (u each) and sums the N H W = 60 products: within gamma(60) + 2u of the sum of the
  # products' magnitudes.
  _assert_within(dw, expected, (gamma(60) + 2 * U) * taps(np.abs(xp), np.abs(g)))


def test_strided_conv_falls_back_to_lax():
  x = jax.random.normal(jax.random.key(9), (1, 8, 8, 2))
  w = jax.random.normal(jax.random.key(10), (3, 3, 2, 3))
  args = ((2, 2), ((1, 1), (1, 1)))
  dn = ('NHWC', 'HWIO', 'NHWC')
  np.testing.assert_array_equal(layers.conv_general_dilated(x, w, *args, dimension_numbers=dn),
                                jax.lax.conv_general_dilated(x, w, *args, dimension_numbers=dn))


class _PlainTrunk(nn.Module):
  """ExpNet's trunk as written before layers.py: nn.Conv and nn.max_pool, the same parameter names."""
  widths: tuple

  @nn.compact
  def __call__(self, x, *, train: bool):
    for block, channels in enumerate(self.widths, start=1):
      x = nn.Conv(channels, (3, 3), padding=1, use_bias=False, name=f'conv{block}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f'bn{block}')(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    return x


def test_expnet_trunk_step_matches_the_plain_layers():
  """The student's loss, gradients and BatchNorm statistics of one train-mode pass equal the plain Flax layers'."""
  widths = (4, 8, 8)
  images = jax.random.normal(jax.random.key(11), (4, 24, 24, 3))
  fast, plain = expnet.Trunk(widths, None, jnp.float32), _PlainTrunk(widths)
  variables = fast.init(jax.random.key(12), images, train=False)
  target = jax.random.normal(jax.random.key(13), (4, 3, 3, 8))

  def loss_and_grads(module):
    def loss(params):
      out, updates = module.apply({'params': params, 'batch_stats': variables['batch_stats']}, images, train=True,
                                  mutable=['batch_stats'])
      return jnp.sum((out - target) ** 2), updates
    return jax.value_and_grad(loss, has_aux=True)(variables['params'])

  (loss_fast, stats_fast), grads_fast = loss_and_grads(fast)
  (loss_plain, stats_plain), grads_plain = loss_and_grads(plain)
  # The two trunks compute the same sums, in orders that may differ (the kernel gradients by another algorithm; the
  # rest as XLA fuses each program). The forward pass is a chain of convolutions of 9 Cin products (27 + 36 + 72),
  # BatchNorm's sums over the 4 x 24^2, 4 x 12^2 and 4 x 6^2 pixels (3024) and the loss's 288 squares: n_f < 3500;
  # the backward pass adds BatchNorm's sums again, the input gradients' 9 Cout products (180) and a kernel
  # gradient's 2304 positions: n < 9000. Where no sum cancels at the scale of its result, relative errors add
  # along the chain, so each array is within 2 n u of its largest element (n_f for the loss and the statistics,
  # which the forward pass computes).
  forward, backward = 3500, 9000
  np.testing.assert_allclose(loss_fast, loss_plain, rtol=2 * forward * U)
  close = lambda chain: lambda a, b: np.testing.assert_allclose(a, b, rtol=0,
                                                                atol=2 * chain * U * float(np.max(np.abs(b))))
  jax.tree.map(close(backward), grads_fast, grads_plain)
  jax.tree.map(close(forward), stats_fast, stats_plain)
