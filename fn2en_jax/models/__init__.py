"""Flax Linen models: the teacher (a face net) and the student (ExpNet), and the activation dtype they run in."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from fn2en_jax import errors

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def validate(config: ml_collections.ConfigDict) -> None:
  if config.dtype not in DTYPES:
    raise errors.ConfigError(f'config.dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}',
                             "use float32 on CPUs and --config.dtype=bfloat16 on GPUs and TPUs")


def dtype(config: ml_collections.ConfigDict):
  """The activations' dtype; parameters and optimizer state stay float32 whatever it is."""
  validate(config)
  return DTYPES[config.dtype]
