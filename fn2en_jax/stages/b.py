"""Stage b: fresh fully connected layers on the stage-a conv trunk; the whole student trained with cross-entropy.

Only the trunk (its parameters and BatchNorm statistics) is read from stage a; the adapter and stage a's optimizer
state stay behind, and the head is initialised anew.
"""

from __future__ import annotations

from fn2en_jax.data import pipeline
from fn2en_jax.models import expnet
from fn2en_jax.stages import Context, Role, classification
from fn2en_jax.train import checkpoint, parallel, state

NAME = 'b'
READS = 'a'
ROLE = Role(net='student', classifies='expressions', row='FN2EN', paper_key='fn2en', rank=2)
FRESH = ('^params/head/',)     # the fully connected layers stage b adds
LEFT_BEHIND = ('/adapter/',)   # stage a's 1x1 adapter to the teacher's channels, if it had one


def setup(config, ctx: Context):
  splits = pipeline.splits(config.data, ctx.data_dir)
  model = expnet.from_config(config, len(splits.train.class_names), axis_name=parallel.AXIS)
  fresh = state.init_variables(model, ctx.rng, config.data.image_size)
  variables = checkpoint.restore_into(checkpoint.trained_state_path(ctx.dir_of(READS)), fresh, reinit=FRESH,
                                      skip=LEFT_BEHIND, name='stage-a trunk')
  initial = state.create_state(model, variables, config.stage_b, ctx.rng, head=FRESH[0])
  return classification.stage(NAME, state=initial, stage_cfg=config.stage_b, data_cfg=config.data, splits=splits,
                              mesh=ctx.mesh)
