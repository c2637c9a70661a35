"""Stage face: fine-tune the face net on the expressions with cross-entropy.

This is the paper's "VGG Fine-Tune (baseline)" row and, frozen, the teacher of stage a. It starts from a converted
face net (`teacher.init`) or from this workdir's face_pretrain stage, keeping everything but the classifier, which
is initialised afresh for the expression classes.
"""

from __future__ import annotations

import os

from fn2en_jax import errors, models
from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets
from fn2en_jax.stages import Context, classification
from fn2en_jax.train import checkpoint, parallel, state

NAME = 'face'
READS = 'face_pretrain'  # only where no converted face net is named in teacher.init


def validate(config) -> None:
  if not config.teacher.init and READS not in config.stages:
    raise errors.ConfigError(
        'config.teacher.init: stage face fine-tunes a pretrained face net, and this config names none',
        'convert VGG-Face (docs/face_nets.md: `python -m fn2en_jax.convert vgg_face --input=vgg_face_dag.pth '
        '--output=$HOME/face_nets/vgg_face`) and add --config.teacher.init=$HOME/face_nets/vgg_face; or train '
        'one on an identity dataset by adding face_pretrain to config.stages and naming it in config.face_data')


def pretrained_path(config, ctx: Context) -> str:
  if config.teacher.init:
    return os.path.join(config.teacher.init, face_nets.PARAMS)
  return checkpoint.trained_state_path(ctx.dir_of(READS))


def setup(config, ctx: Context):
  splits = pipeline.splits(config.data, ctx.data_dir)
  model = face_nets.build(config.teacher, len(splits.train.class_names), models.dtype(config), parallel.AXIS)
  fresh = state.init_variables(model, ctx.rng, config.data.image_size)
  classifier = face_nets.classifier_pattern(config.teacher.model)
  variables = checkpoint.restore_into(pretrained_path(config, ctx), fresh, reinit=(classifier,), skip=(classifier,),
                                      name='face net')
  initial = state.create_state(model, variables, config.stage_face, ctx.rng, head=classifier)
  return classification.stage(NAME, state=initial, stage_cfg=config.stage_face, data_cfg=config.data, splits=splits,
                              mesh=ctx.mesh)
