"""Baseline scratch: the student trained from random initialisation with cross-entropy ("Train From Scratch (BN)")."""

from __future__ import annotations

from fn2en_jax.data import pipeline
from fn2en_jax.models import expnet
from fn2en_jax.stages import Context, Role, classification
from fn2en_jax.train import parallel, state

NAME = 'scratch'
READS = None
ROLE = Role(net='student', classifies='expressions', row='Train from scratch (BN)', paper_key='scratch',
            rank=0)


def setup(config, ctx: Context):
  splits = pipeline.splits(config.data, ctx.data_dir)
  model = expnet.from_config(config, len(splits.train.class_names), axis_name=parallel.AXIS)
  variables = state.init_variables(model, ctx.rng, config.data.image_size)
  initial = state.create_state(model, variables, config.stage_scratch, ctx.rng)
  return classification.stage(NAME, state=initial, stage_cfg=config.stage_scratch, data_cfg=config.data,
                              splits=splits, mesh=ctx.mesh)
