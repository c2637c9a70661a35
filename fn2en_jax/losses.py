"""The two losses of FaceNet2ExpNet, as pure jnp functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fn2en_jax import errors

REDUCTIONS = ('sum', 'mean')


def validate_lp(p, reduction: str, field: str = 'stage_a') -> None:
  """The two choices of eq. 3: p (1 or 2) and how a feature map's elements are reduced."""
  if p not in (1, 2):
    raise errors.ConfigError(f'config.{field}.p must be 1 or 2, got {p!r}', f'set --config.{field}.p=2 (the paper)')
  if reduction not in REDUCTIONS:
    raise errors.ConfigError(f'config.{field}.reduction must be one of {list(REDUCTIONS)}, got {reduction!r}',
                             f"set --config.{field}.reduction='sum' (the paper)")


def lp_regression(student_map: jax.Array, teacher_map: jax.Array, p: int = 2,
                  reduction: str = 'sum') -> jax.Array:
  """Eq. 3 of the paper: ||g(I) - G(I)||_p^p, averaged over the batch.

  Per example the p-th power of the Lp distance is *summed* over every element of the feature map
  (reduction='sum', the paper's loss, the negative log-likelihood of f(X) = C_p exp(-||X - mu||_p^p) up to a
  constant), or averaged over them (reduction='mean', the same minimiser with a learning rate that does not depend
  on the map's size). Computed in float32 whatever the activations' dtype.
  """
  validate_lp(p, reduction)
  if student_map.shape != teacher_map.shape:
    raise ValueError(f'lp_regression: student map {student_map.shape} != teacher map {teacher_map.shape}')
  diff = student_map.astype(jnp.float32) - teacher_map.astype(jnp.float32)
  per_element = jnp.abs(diff) if p == 1 else jnp.square(diff)
  per_example = per_element.reshape((diff.shape[0], -1))
  per_example = per_example.sum(axis=1) if reduction == 'sum' else per_example.mean(axis=1)
  return per_example.mean()


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Mean softmax cross-entropy against integer labels, with optional label smoothing."""
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()
