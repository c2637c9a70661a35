"""VGG-16 face net (VGG-Face, Parkhi et al. 2015) with named feature taps.

Parameter names follow the original release (conv1_1 ... conv5_3, fc6, fc7, fc8) so that converted weights map
one to one. Every tap is the activation *after* its ReLU (Caffe's in-place ReLU overwrote fc6/fc7 the same way).
Converted VGG-Face weights carry their training preprocessing (`input_mean`, 0-255 RGB) as module fields;
see models/preprocess.py.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fn2en_jax.models import layers
from fn2en_jax.models.preprocess import to_net_input

# (convs per block, channels) of VGG-16.
BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
TAPS = ('pool1', 'pool2', 'pool3', 'pool4', 'pool5', 'fc6', 'fc7', 'logits')


class VGGFace(nn.Module):
  """VGG-16; `width` scales every layer (1.0 is VGG-Face itself, the demo uses a thin one)."""
  num_classes: int
  width: float = 1.0
  fc_dim: int = 4096
  dropout: float = 0.5
  input_mean: Sequence[float] | None = None
  input_std: float = 1.0
  # VGG-16-BN: BatchNorm after every conv. Not VGG-Face's architecture (converted weights never have it); it lets a
  # face net be trained from scratch in minutes where no pretrained one is at hand (the demo's face_pretrain).
  batch_norm: bool = False
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, tap: str = 'logits'):
    if tap not in TAPS:
      raise ValueError(f'VGGFace tap must be one of {TAPS}, got {tap!r}')
    x = to_net_input(x, self.input_mean, self.input_std).astype(self.dtype)
    # He initialisation: without BatchNorm, Flax's default (LeCun) halves the signal's variance at every ReLU and a
    # VGG trained from scratch does not learn at all. Converted weights replace it anyway.
    he = nn.initializers.kaiming_normal()
    for block, (convs, channels) in enumerate(BLOCKS, start=1):
      for i in range(1, convs + 1):
        x = nn.Conv(max(1, round(channels * self.width)), (3, 3), padding=1, kernel_init=he, dtype=self.dtype,
                    conv_general_dilated=layers.conv_general_dilated, name=f'conv{block}_{i}')(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name, dtype=self.dtype,
                           name=f'bn{block}_{i}')(x)
        x = nn.relu(x)
      x = layers.max_pool_2x2(x)  # nn.max_pool 2x2/2, same values and gradients, faster on XLA:CPU
      if tap == f'pool{block}':
        return x
    # Flax flattens in (H, W, C) order; converters from CHW frameworks permute fc6 accordingly.
    x = x.reshape((x.shape[0], -1))
    for name in ('fc6', 'fc7'):
      x = nn.relu(nn.Dense(max(1, round(self.fc_dim * self.width)), kernel_init=he, dtype=self.dtype, name=name)(x))
      if tap == name:
        return x
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc8')(x)
