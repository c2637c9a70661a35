"""The one input convention of every model here, and how a converted face net gets back to its own.

The pipeline feeds RGB scaled to [-1, 1] (`x / 127.5 - 1`). A converted net was trained on another scale (VGG-Face:
0-255 minus a mean; dlib: 0-255 minus a mean, over 256), so it carries `input_mean`/`input_std` as module fields,
stored with its weights, and undoes the pipeline's scaling first thing.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp


def to_net_input(x, mean: Sequence[float] | None, std: float | Sequence[float] = 1.0):
  """[-1, 1] RGB -> (pixel - mean) / std on the 0-255 scale; the identity when `mean` is None."""
  if mean is None:
    return x
  return ((x + 1.0) * 127.5 - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
