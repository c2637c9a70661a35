"""The one input convention of every model here, and how a converted face net gets back to its own.

The pipeline feeds RGB scaled to [-1, 1] (`from_uint8`; `to_uint8` is its inverse, for showing an input).
Everything that makes a model's input (the pipeline, predict, features) or shows one (evaluate, visualize) uses
this pair. A converted net was trained on another scale (VGG-Face:
0-255 minus a mean; dlib: 0-255 minus a mean, over 256), so it carries `input_mean`/`input_std` as module fields,
stored with its weights, and undoes the pipeline's scaling first thing.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

SCALE = 127.5  # 0..255 -> -1..1


def from_uint8(images):
  """0-255 RGB (uint8 or float; a NumPy or a JAX array, returned as the same kind) -> float32 in [-1, 1]."""
  return images.astype(np.float32) / SCALE - 1.0


def to_uint8(images) -> np.ndarray:
  """[-1, 1] -> displayable uint8 RGB (rounded and clipped: a synthesised input may leave the range)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * SCALE), 0, 255).astype(np.uint8)


def to_net_input(x, mean: Sequence[float] | None, std: float | Sequence[float] = 1.0):
  """[-1, 1] RGB -> (pixel - mean) / std on the 0-255 scale; the identity when `mean` is None."""
  if mean is None:
    return x
  return ((x + 1.0) * SCALE - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
