"""A stage's budget in epochs or in steps, with one rule (big_vision's `utils.steps`).

Each step-counted field of a stage's config has an epoch-counted twin; when the twin is > 0 it wins, and the steps
follow from the number of training examples of the run (of this fold, less its validation subjects), so that one
recipe serves a dataset of any size with no hand-typed dataset size.
"""

from __future__ import annotations

import ml_collections

from fn2en_jax import errors

# step field -> its epoch twin.
EPOCH_FIELDS = {'num_steps': 'num_epochs', 'warmup_steps': 'warmup_epochs', 'eval_every': 'eval_every_epochs',
                'checkpoint_every': 'checkpoint_every_epochs'}
AT_LEAST_ONE = ('num_steps', 'eval_every', 'checkpoint_every')


def steps_per_epoch(train_size: int, batch_size: int) -> float:
  """Batches per pass over the training set (the pipeline repeats before batching, so no example is dropped)."""
  return train_size / batch_size


def resolve(stage_cfg: ml_collections.ConfigDict, train_size: int) -> ml_collections.ConfigDict:
  """A copy of `stage_cfg` whose step fields come from their epoch twins where those are set."""
  cfg = stage_cfg.copy_and_resolve_references()
  per_epoch = steps_per_epoch(train_size, cfg.batch_size)
  for steps, epochs in EPOCH_FIELDS.items():
    if cfg.get(epochs, 0) > 0:
      cfg[steps] = int(round(cfg[epochs] * per_epoch))
      if steps in AT_LEAST_ONE:
        cfg[steps] = max(cfg[steps], 1)
  return cfg


def validate(stage_cfg: ml_collections.ConfigDict, field: str) -> None:
  for epochs in EPOCH_FIELDS.values():
    if stage_cfg.get(epochs, 0) < 0:
      raise errors.ConfigError(f'config.{field}.{epochs} must be >= 0 (0: use the step count), got '
                               f'{stage_cfg[epochs]}', f'set --config.{field}.{epochs} to a number of epochs')
