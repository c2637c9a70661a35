"""Baseline scratch: the student trained from random initialisation with cross-entropy ("Train From Scratch (BN)")."""

from __future__ import annotations

import jax

from fn2en_jax.stages import common

NAME = 'scratch'


def setup(config, workdir: str, mesh, data_dir: str):
  del workdir
  train, test = common.expression_splits(config, data_dir)
  model = common.student(config, len(train.class_names))
  rng = jax.random.fold_in(jax.random.key(config.seed), 4)
  variables = common.init_variables(model, rng, config.data.image_size)
  state = common.create_state(model, variables, config.stage_scratch, rng)
  return common.classification_stage(NAME, state=state, stage_cfg=config.stage_scratch, data_cfg=config.data,
                                     train=train, test=test, mesh=mesh)
