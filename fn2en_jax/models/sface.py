"""SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition", IEEE TIP 2021),
the face recogniser of OpenCV Zoo (`face_recognition_sface_2021dec`), with named taps.

The layers are those of the ONNX graph OpenCV Zoo releases, input first, every conv without a bias and followed by
BatchNorm (kept as BatchNorm: the graph does not fold it) and a PReLU with one slope per channel:
  conv_1       3x3/1 conv, 3 -> 32
  conv_k_dw    3x3 depthwise conv (stride 2 at k = 3, 5, 7, 13, else 1), then
  conv_k       1x1 conv, for k = 2..14 (a MobileNet-v1 body: 64, 128, 128, 256, 256, 512 x 6, 1024, 1024)
  bn1          BatchNorm of the 7x7x1024 map, dropout (0.4), flatten, pre_fc1 (dense to 128), fc1 (BatchNorm of
               the 128-d vector): the embedding.
112x112 input: 112 (conv_1, conv_2) -> 56 (conv_3, conv_4) -> 28 (conv_5, conv_6) -> 14 (conv_7..conv_12) -> 7
(conv_13, conv_14) -> embedding. Every 3x3 conv pads 1, so a stride-2 one gives ceil(n / 2).

Taps: `conv_1`..`conv_14` (each block's output after its pointwise PReLU: the names of the ONNX graph), `embedding`
(fc1), and `logits` from a classifier added on the embedding for fine-tuning (as dlib_resnet's).
The graph feeds the net (pixel - 127.5) / 128 of an RGB 0-255 image; the module does that from the pipeline's
[-1, 1] input with `input_mean`/`input_std`, stored with the converted weights (models/preprocess.py).
The flatten before pre_fc1 is in Flax's (H, W, C) order; the converter permutes pre_fc1's rows from ONNX's (C, H, W).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fn2en_jax.models import layers
from fn2en_jax.models.preprocess import to_net_input

STEM_CHANNELS = 32
# (stride of the depthwise conv, channels of the pointwise conv) of conv_2 .. conv_14.
BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512), (1, 512), (1, 512),
          (1, 512), (2, 1024), (1, 1024))
BN_EPSILON = 1e-3        # the convs' BatchNorm in the graph
HEAD_BN_EPSILON = 2e-5   # bn1 and fc1
BN_MOMENTUM = 0.9        # every BatchNormalization node's momentum, Flax's meaning (the running average's decay)
TAPS = tuple(f'conv_{k}' for k in range(1, len(BLOCKS) + 2)) + ('embedding', 'logits')


def blocks() -> Iterator[tuple[int, int, int]]:
  """(k, stride, channels) of the depthwise-separable blocks conv_k, input first."""
  for k, (stride, channels) in enumerate(BLOCKS, start=2):
    yield k, stride, channels


class PReLU(nn.Module):
  """PReLU with one slope per channel (Flax's nn.PReLU has a single one)."""
  dtype: Any

  @nn.compact
  def __call__(self, x):
    slope = self.param('slope', nn.initializers.constant(0.25), (x.shape[-1],)).astype(self.dtype)
    # max/min rather than a where: the same values (x + slope * 0 = x exactly), in primitives tests/roundoff.py has
    # rules for.
    return jnp.maximum(x, 0) + slope * jnp.minimum(x, 0)


class ConvBN(nn.Module):
  """conv (no bias) -> BatchNorm -> PReLU, ONNX's conv_k_conv2d, conv_k_batchnorm, conv_k_relu."""
  channels: int
  kernel: int
  stride: int
  depthwise: bool
  axis_name: str | None
  dtype: Any

  @nn.compact
  def __call__(self, x, *, train: bool):
    pad = self.kernel // 2
    x = nn.Conv(self.channels, (self.kernel, self.kernel), strides=self.stride, padding=pad, use_bias=False,
                feature_group_count=x.shape[-1] if self.depthwise else 1, dtype=self.dtype,
                conv_general_dilated=layers.conv_general_dilated, name='conv')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                     axis_name=self.axis_name, dtype=self.dtype, name='batchnorm')(x)
    return PReLU(self.dtype, name='prelu')(x)


class SFace(nn.Module):
  """`width` scales every channel count but the embedding's (1.0 is SFace; tests use thin ones)."""
  num_classes: int
  width: float = 1.0
  embedding_dim: int = 128
  dropout: float = 0.4
  input_mean: Sequence[float] | None = None
  input_std: float = 1.0
  axis_name: str | None = None  # the data-parallel axis BatchNorm statistics are averaged over in training
  dtype: Any = jnp.float32

  def _channels(self, channels: int) -> int:
    return max(1, round(channels * self.width))

  @nn.compact
  def __call__(self, images, *, train: bool, tap: str = 'logits'):
    if tap not in TAPS:
      raise ValueError(f'SFace tap must be one of {TAPS}, got {tap!r}')
    x = to_net_input(images, self.input_mean, self.input_std).astype(self.dtype)
    common = dict(axis_name=self.axis_name, dtype=self.dtype)
    x = ConvBN(self._channels(STEM_CHANNELS), 3, 1, False, name='conv_1', **common)(x, train=train)
    if tap == 'conv_1':
      return x
    for k, stride, channels in blocks():
      x = ConvBN(x.shape[-1], 3, stride, True, name=f'conv_{k}_dw', **common)(x, train=train)
      x = ConvBN(self._channels(channels), 1, 1, False, name=f'conv_{k}', **common)(x, train=train)
      if tap == f'conv_{k}':
        return x
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=HEAD_BN_EPSILON,
                     name='bn1', **common)(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    # pre_fc1's input size fixes the input's: the converted net's 50176 = 7 * 7 * 1024 rows need 97..112 px.
    x = nn.Dense(self.embedding_dim, dtype=self.dtype, name='pre_fc1')(x.reshape((x.shape[0], -1)))
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=HEAD_BN_EPSILON,
                     name='fc1', **common)(x)
    if tap == 'embedding':
      return x
    return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
