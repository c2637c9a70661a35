"""Stage face_pretrain: train the face net to recognise identities.

Needed only where no pretrained face net is at hand (the demo): it stands in for VGG-Face's training on 2622
identities. It saves the whole face net; the `face` stage keeps everything but the identity classifier.
"""

from __future__ import annotations

import jax

from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets
from fn2en_jax.stages import common

NAME = 'face_pretrain'


def setup(config, workdir: str, mesh, data_dir: str):
  del workdir
  if config.teacher.init:
    raise ValueError('stages: face_pretrain trains a face net from scratch, but teacher.init='
                     f'{config.teacher.init!r} already names one; drop face_pretrain from config.stages')
  examples = pipeline.load(config.face_data, config.face_data.split, data_dir=data_dir)
  train, test = pipeline.holdout_split(examples, config.face_data.holdout_every)
  model = face_nets.build(config.teacher, len(examples.class_names), common.dtype(config))
  rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  variables = common.init_variables(model, rng, config.face_data.image_size)
  state = common.create_state(model, variables, config.stage_face_pretrain, rng)
  return common.classification_stage(NAME, state=state, stage_cfg=config.stage_face_pretrain,
                                     data_cfg=config.face_data, train=train, test=test, mesh=mesh)
