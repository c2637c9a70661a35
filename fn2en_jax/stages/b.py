"""Stage b: fresh fully connected layers on the stage-a conv trunk; the whole student trained with cross-entropy.

Only the trunk (its parameters and BatchNorm statistics) is read from stage a; the adapter and stage a's optimizer
state stay behind, and the head is initialised anew.
"""

from __future__ import annotations

import os

import jax

from fn2en_jax.stages import common
from fn2en_jax.train import checkpoint

NAME = 'b'


def trunk_of(variables: dict) -> dict:
  return {collection: {'trunk': variables[collection]['trunk']} for collection in ('params', 'batch_stats')}


def setup(config, workdir: str, mesh, data_dir: str):
  train, test = common.expression_splits(config, data_dir)
  model = common.student(config, len(train.class_names))
  rng = jax.random.fold_in(jax.random.key(config.seed), 3)
  variables = common.init_variables(model, rng, config.data.image_size)
  trunk = checkpoint.restore_subset(checkpoint.latest_state_path(os.path.join(workdir, 'a')), trunk_of(variables))
  variables = {c: {**variables[c], 'trunk': trunk[c]['trunk']} for c in ('params', 'batch_stats')}
  state = common.create_state(model, variables, config.stage_b, rng)
  return common.classification_stage(NAME, state=state, stage_cfg=config.stage_b, data_cfg=config.data,
                                     train=train, test=test, mesh=mesh)
