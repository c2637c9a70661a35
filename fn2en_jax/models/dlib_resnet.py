"""dlib's ResNet face-recognition net (dlib_face_recognition_resnet_model_v1, Davis King 2017) with named taps.

The architecture of dlib's examples/dnn_face_recognition_ex.cpp, input first: conv 7x7/2 (32) -> affine -> ReLU ->
max pool 3x3/2, then five residual levels of (channels, units) (32, 3), (64, 4), (128, 3), (256, 3), (256, 1), the
first unit of every level but the first downsampling; global average pool; fc without bias to the 128-d embedding.
150x150 input: 72 -> 35 (res1) -> 17 (res2) -> 8 (res3) -> 4 (res4) -> 2 (res5) -> embedding.

dlib's layers are reproduced exactly, including two quirks of its residual sum (`add_prev`): a downsampling unit's
3x3/2 conv has no padding while its shortcut is a 2x2/2 average pool of the input, so the two can differ in size
(8 -> 3 against 4) and in channels (the shortcut has the input's); dlib adds them top-left aligned with zeros
where either is missing. The `affine` layers are dlib's frozen BatchNorm: a per-channel scale and bias.
dlib feeds the net (pixel - mean) / 256 with its own RGB mean; the module does that from the pipeline's [-1, 1]
input with `input_mean`/`input_std`, stored with the converted weights.
Taps: res1..res5 (after each level, post-ReLU), `embedding`, and `logits` from a classifier added for fine-tuning.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fn2en_jax.models import layers
from fn2en_jax.models.preprocess import to_net_input

# (channels, units) per level, input first; every level but the first starts with a downsampling unit.
LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))
STEM_CHANNELS = 32
TAPS = tuple(f'res{level}' for level in range(1, len(LEVELS) + 1)) + ('embedding', 'logits')


def units() -> Iterator[tuple[int, str, int, bool, bool]]:
  """(level, parameter name, channels, downsamples, ends its level) of every residual unit, input first."""
  for level, (channels, count) in enumerate(LEVELS, start=1):
    for unit in range(1, count + 1):
      yield level, f'res{level}_{unit}', channels, level > 1 and unit == 1, unit == count


def _add_zero_extended(a, b):
  """dlib's add_prev: the sum over the larger shape, each operand top-left aligned and zero beyond its extent."""
  shape = tuple(max(p, q) for p, q in zip(a.shape, b.shape))
  extend = lambda t: jnp.pad(t, [(0, s - d) for s, d in zip(shape, t.shape)])
  return extend(a) + extend(b)


class Affine(nn.Module):
  """dlib's affine_ layer, BatchNorm folded into a per-channel scale and bias. dlib keeps it frozen; here it is a
  parameter like any other, so a `face` stage that fine-tunes the net also adapts it."""
  dtype: Any

  @nn.compact
  def __call__(self, x):
    scale = self.param('scale', nn.initializers.ones, (x.shape[-1],))
    bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],))
    return x * scale.astype(self.dtype) + bias.astype(self.dtype)


class ResidualUnit(nn.Module):
  channels: int
  down: bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    stride, padding = (2, 'VALID') if self.down else (1, 1)
    y = nn.Conv(self.channels, (3, 3), strides=stride, padding=padding, dtype=self.dtype, name='conv_a')(x)
    y = nn.relu(Affine(self.dtype, name='affine_a')(y))
    y = nn.Conv(self.channels, (3, 3), padding=1, dtype=self.dtype, name='conv_b')(y)
    y = Affine(self.dtype, name='affine_b')(y)
    shortcut = layers.avg_pool_2x2(x) if self.down else x
    return nn.relu(_add_zero_extended(y, shortcut))


class DlibResNet(nn.Module):
  """`width` scales every channel count (1.0 is dlib's net; tests use thin ones)."""
  num_classes: int
  width: float = 1.0
  embedding_dim: int = 128
  input_mean: Sequence[float] | None = None
  input_std: float = 1.0
  dtype: Any = jnp.float32

  def _channels(self, channels: int) -> int:
    return max(1, round(channels * self.width))

  @nn.compact
  def __call__(self, images, *, train: bool, tap: str = 'logits'):
    del train  # no dropout or batch statistics: the affine layers are frozen BatchNorm
    if tap not in TAPS:
      raise ValueError(f'DlibResNet tap must be one of {TAPS}, got {tap!r}')
    x = to_net_input(images, self.input_mean, self.input_std).astype(self.dtype)
    x = nn.Conv(self._channels(STEM_CHANNELS), (7, 7), strides=2, padding='VALID', dtype=self.dtype, name='conv')(x)
    x = nn.relu(Affine(self.dtype, name='affine')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    for level, name, channels, down, last in units():
      x = ResidualUnit(self._channels(channels), down, self.dtype, name=name)(x)
      if 0 in x.shape[1:3]:
        raise ValueError(f'DlibResNet: a {images.shape[1]}x{images.shape[2]} input leaves nothing at {name}; '
                         "dlib's net takes 150x150 face chips")
      if last and tap == f'res{level}':
        return x
    x = nn.Dense(self.embedding_dim, use_bias=False, dtype=self.dtype, name='fc')(jnp.mean(x, axis=(1, 2)))
    if tap == 'embedding':
      return x
    return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
