"""ExpNet, the student of FaceNet2ExpNet: a conv trunk, a classifier head and a stage-a adapter.

Reconstructed from the paper: five blocks of conv3x3 -> BatchNorm -> ReLU -> maxpool 2x2/2, so that a 224x224 input
ends at 7x7x512, the shape of VGG-16's pool5 that stage a regresses; then flatten -> FC -> ReLU -> dropout -> FC.
The three parts are separate submodules (`trunk`, `head`, `adapter`) because the stages treat them differently:
stage a trains trunk+adapter, stage b keeps the trunk and replaces everything else.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fn2en_jax import models
from fn2en_jax.models import layers

TAPS = ('pool5', 'adapter', 'logits')


class Trunk(nn.Module):
  widths: Sequence[int]
  axis_name: str | None
  dtype: Any

  @nn.compact
  def __call__(self, x, *, train: bool):
    for block, channels in enumerate(self.widths, start=1):
      # layers.conv_general_dilated: the same convolution with a kernel gradient that is fast on XLA:CPU.
      x = nn.Conv(channels, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                  conv_general_dilated=layers.conv_general_dilated, name=f'conv{block}')(x)
      # BatchNorm statistics are averaged over every replica (axis_name) so that they match single-device training.
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name, dtype=self.dtype,
                       name=f'bn{block}')(x)
      x = layers.max_pool_2x2(nn.relu(x))  # nn.max_pool 2x2/2, 4x faster forward+backward on XLA:CPU
    return x


class Head(nn.Module):
  num_classes: int
  fc_dim: int
  dropout: float
  dtype: Any

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype, name='fc1')(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc2')(x)


class ExpNet(nn.Module):
  """The student. `adapter_channels` adds the stage-a 1x1 conv used when the teacher's tap has other channels."""
  num_classes: int
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  fc_dim: int = 256
  dropout: float = 0.5
  adapter_channels: int | None = None
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, tap: str = 'logits'):
    if tap not in TAPS:
      raise ValueError(f'ExpNet tap must be one of {TAPS}, got {tap!r}')
    x = Trunk(tuple(self.widths), self.axis_name, self.dtype, name='trunk')(x.astype(self.dtype), train=train)
    if tap == 'pool5':
      return x
    if tap == 'adapter':
      if self.adapter_channels is None:
        return x
      return nn.Conv(self.adapter_channels, (1, 1), dtype=self.dtype, name='adapter')(x)
    return Head(self.num_classes, self.fc_dim, self.dropout, self.dtype, name='head')(x, train=train)


def from_config(config, num_classes: int, *, axis_name: str | None = None,
                adapter_channels: int | None = None) -> ExpNet:
  """The student `config.student` describes, in `config.dtype`. `axis_name`: the data-parallel axis its BatchNorm
  averages over in training (None for inference on one device)."""
  s = config.student
  return ExpNet(num_classes=num_classes, widths=tuple(s.widths), fc_dim=s.fc_dim, dropout=s.dropout,
                adapter_channels=adapter_channels, axis_name=axis_name, dtype=models.dtype(config))
