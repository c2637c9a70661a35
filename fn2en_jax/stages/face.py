"""Stage face: fine-tune the face net on the expressions with cross-entropy.

This is the paper's "VGG Fine-Tune (baseline)" row and, frozen, the teacher of stage a. It starts from a converted
face net (`teacher.init`) or from this workdir's face_pretrain stage, keeping everything but the classifier, which
is initialised afresh for the expression classes, or, with `stage_face.linear_probe`, fitted first to the frozen
features (stages/linear_probe.py: LP-FT).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
from absl import logging

from fn2en_jax import errors, models, workdir
from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets
from fn2en_jax.stages import Context, Role, classification, linear_probe
from fn2en_jax.train import checkpoint, loop, parallel, state

NAME = 'face'
READS = 'face_pretrain'  # only where no converted face net is named in teacher.init
ROLE = Role(net='face_net', classifies='expressions', row='Face net fine-tune (baseline)', paper_key='face',
            rank=1)
PROBE_JSON = 'linear_probe.json'


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


def with_linear_probe(config, ctx: Context, model, variables: dict, splits: pipeline.Splits) -> tuple[dict, dict]:
  """(variables with the classifier fitted to the frozen features, the probe's record); the record is kept in
  the stage's directory, and a finished stage (whose state comes from its checkpoint) only reads it back."""
  path = os.path.join(ctx.stage_dir, PROBE_JSON)
  if loop.is_finished(ctx.workdir, NAME, config.stage_face) and os.path.exists(path):
    with open(path) as f:
      return variables, json.load(f)
  hp = config.stage_face
  features = jax.jit(functools.partial(model.apply, train=False,
                                       tap=face_nets.CLASSIFIER_INPUT[config.teacher.model]))
  fitted, record = linear_probe.probe(features, variables, splits, config.data, l2s=hp.linear_probe_l2,
                                      steps=hp.linear_probe_steps)
  logging.info('face: linear probe of the frozen features, L2 %g (%s): %s', record['l2'], record['chosen_by'],
               record.get('validation_accuracy', record['train_accuracy']))
  if jax.process_index() == 0:
    workdir.write_json(path, record)
  params = dict(variables['params'])
  params[face_nets.CLASSIFIER[config.teacher.model]] = jax.tree.map(jnp.asarray, fitted)
  return {**variables, 'params': params}, record


def setup(config, ctx: Context):
  splits = pipeline.splits(config.data, ctx.data_dir)
  model = face_nets.build(config.teacher, len(splits.train.class_names), models.dtype(config), parallel.AXIS)
  fresh = state.init_variables(model, ctx.rng, config.data.image_size)
  classifier = face_nets.classifier_pattern(config.teacher.model)
  variables = checkpoint.restore_into(pretrained_path(config, ctx), fresh, reinit=(classifier,), skip=(classifier,),
                                      name='face net')
  notes = {}
  if config.stage_face.linear_probe:
    variables, notes['linear_probe'] = with_linear_probe(config, ctx, model, variables, splits)
  initial = state.create_state(model, variables, config.stage_face, ctx.rng, head=classifier)
  stage = classification.stage(NAME, state=initial, stage_cfg=config.stage_face, data_cfg=config.data,
                               splits=splits, mesh=ctx.mesh)
  return dataclasses.replace(stage, notes=notes)
