"""Stage face: fine-tune the face net on the expressions with cross-entropy.

This is the paper's "VGG Fine-Tune (baseline)" row and, frozen, the teacher of stage a. It starts from a converted
face net (`teacher.init`) or from this workdir's face_pretrain stage, keeping everything but the classifier.
"""

from __future__ import annotations

import os

import jax

from fn2en_jax.models import face_nets
from fn2en_jax.stages import common
from fn2en_jax.train import checkpoint

NAME = 'face'


def pretrained_path(config, workdir: str) -> str:
  if config.teacher.init:
    return os.path.join(config.teacher.init, 'params')
  return checkpoint.latest_state_path(os.path.join(workdir, 'face_pretrain'))


def setup(config, workdir: str, mesh, data_dir: str):
  train, test = common.expression_splits(config, data_dir)
  model = face_nets.build(config.teacher, len(train.class_names), common.dtype(config))
  rng = jax.random.fold_in(jax.random.key(config.seed), 1)
  variables = common.init_variables(model, rng, config.data.image_size)
  restored = checkpoint.restore_subset(pretrained_path(config, workdir),
                                      face_nets.without_classifier(config.teacher.model, variables))
  variables = {**variables, **restored, 'params': {**variables['params'], **restored['params']}}
  state = common.create_state(model, variables, config.stage_face, rng)
  return common.classification_stage(NAME, state=state, stage_cfg=config.stage_face, data_cfg=config.data,
                                     train=train, test=test, mesh=mesh)
