"""Pooling layers as pure functions, faster on XLA's CPU backend than `nn.max_pool` / `nn.avg_pool` for 2x2/2.

`nn.max_pool` lowers to `reduce_window`, whose gradient is a `select_and_scatter_add`; XLA's CPU backend runs both
as generic loops over every window (about 1 s forward+backward for a 16x224x224x64 map on 2 cores). Written as four
strided views of the input and an elementwise max, the forward and the backward each become a single fused
elementwise loop. The results are the same values and the same gradients as `nn.max_pool(x, (2, 2), (2, 2))`:
where a window holds several equal maxima, the whole gradient goes to the first of them in row-major order, as
`select_and_scatter_add` does (autodiff of `jnp.max` would split it between them instead).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _corners(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The four positions of every 2x2 window of an NHWC map (odd last rows/columns dropped, as VALID pooling does)."""
  # Strided `lax.slice`s rather than indexing a reshape: with a symbolic batch (jax2tf export) indexing becomes a
  # dynamic gather, which TFLite cannot convert; a slice converts.
  n, h, w, c = x.shape
  if h < 2 or w < 2:  # no whole window (a thin net's last blocks on a small input): empty, as VALID pooling gives
    return (jnp.zeros((n, h // 2, w // 2, c), x.dtype),) * 4
  end = (n, h // 2 * 2, w // 2 * 2, c)
  return tuple(jax.lax.slice(x, (0, i, j, 0), end, (1, 2, 2, 1)) for i in (0, 1) for j in (0, 1))


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
  """`nn.max_pool(x, (2, 2), strides=(2, 2))` of an NHWC map: same values, same gradients."""
  a, b, c, d = _corners(x)
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _max_pool_fwd(x):
  return max_pool_2x2(x), x


def _max_pool_bwd(x, g):
  a, b, c, d = _corners(x)
  y = jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))
  zero = jnp.zeros_like(g)
  # The first maximum in row-major window order takes the gradient; later equal values take none.
  take_a = a == y
  take_b = ~take_a & (b == y)
  take_c = ~take_a & ~take_b & (c == y)
  take_d = ~take_a & ~take_b & ~take_c
  ga, gb, gc, gd = (jnp.where(t, g, zero) for t in (take_a, take_b, take_c, take_d))
  top = jnp.stack([ga, gb], axis=3)      # (n, h/2, w/2, 2, c): the window's two columns
  bottom = jnp.stack([gc, gd], axis=3)
  n, h, w, ch = x.shape
  dx = jnp.stack([top, bottom], axis=2).reshape(n, h // 2 * 2, w // 2 * 2, ch)
  if dx.shape != x.shape:  # odd sizes: the dropped last row/column gets no gradient
    dx = jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0)))
  return (dx,)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  """`nn.avg_pool(x, (2, 2), strides=(2, 2))` of an NHWC map (a mean, so plain autodiff gives the same gradient)."""
  a, b, c, d = _corners(x)
  return ((a + b) + (c + d)) * jnp.asarray(0.25, x.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Convolution with a fast kernel gradient

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _is_nhwc(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, tuple) and all(isinstance(d, str) for d in dimension_numbers):
    return tuple(dimension_numbers) == _NHWC
  # Flax passes ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)).
  return (tuple(dimension_numbers.lhs_spec), tuple(dimension_numbers.rhs_spec),
          tuple(dimension_numbers.out_spec)) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _plain_conv(x, w, padding):
  return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """A stride-1 NHWC x HWIO convolution: `lax.conv_general_dilated`'s values, its input gradient, and the kernel
  gradient computed as one matrix product per kernel tap.

  XLA's CPU backend lowers the kernel gradient of a convolution to a convolution whose window is the whole feature
  map, which it runs 10-20x slower than the forward convolution (7.5 s against 0.35 s for 112x112x64 -> 128 at
  batch 4, 2 shared cores): most of a train step. The same sums as `kh * kw` products of (Cin, N*H*W) by
  (N*H*W, Cout) run near matrix-product speed.
  """
  return _plain_conv(x, w, padding)


def _conv2d_fwd(x, w, padding):
  return _plain_conv(x, w, padding), (x, w)


def _conv2d_bwd(padding, residuals, g):
  x, w = residuals
  _, input_vjp = jax.vjp(lambda x_: _plain_conv(x_, w, padding), x)
  (dx,) = input_vjp(g)
  kh, kw = w.shape[:2]
  (top, bottom), (left, right) = padding
  xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  h, wd = g.shape[1:3]
  cin, cout = w.shape[2:]
  g2 = g.reshape(-1, cout)
  # Each tap: (Cin, N*H*W) @ (N*H*W, Cout). The explicit transpose (fused into the copy of the shifted window) lets
  # XLA call a plain row-major matrix product, 1.6-2.2x faster than a dot_general contracting over N, H, W.
  taps = [jnp.matmul(xp[:, i:i + h, j:j + wd, :].reshape(-1, cin).T, g2, preferred_element_type=jnp.float32)
          for i in range(kh) for j in range(kw)]
  dw = jnp.stack(taps).reshape(w.shape).astype(w.dtype)
  return dx, dw


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
  """`lax.conv_general_dilated`, through `conv2d` where it applies (stride 1, no dilation or groups, NHWC, explicit
  padding): what `nn.Conv(..., conv_general_dilated=layers.conv_general_dilated)` calls."""
  simple = (tuple(window_strides) == (1, 1) and (lhs_dilation is None or tuple(lhs_dilation) == (1, 1))
            and (rhs_dilation is None or tuple(rhs_dilation) == (1, 1)) and feature_group_count == 1
            and batch_group_count == 1 and precision is None and preferred_element_type is None
            and not isinstance(padding, str) and lhs.ndim == 4 and _is_nhwc(dimension_numbers))
  if not simple:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)
  return conv2d(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in padding))
