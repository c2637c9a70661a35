"""Stage face_pretrain: train the face net to recognise identities.

Needed only where no pretrained face net is at hand (the demo): it stands in for VGG-Face's training on 2622
identities. It saves the whole face net; the `face` stage keeps everything but the identity classifier.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from fn2en_jax import errors, models
from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets
from fn2en_jax.stages import Context, Role, classification
from fn2en_jax.train import checkpoint, parallel, state

NAME = 'face_pretrain'
READS = None
ROLE = Role(net='face_net', classifies='identities')  # trains the face net on identities: no row


def validate(config) -> None:
  if config.teacher.init:
    raise errors.ConfigError(f'config.stages: face_pretrain trains a face net from scratch, but teacher.init='
                             f'{config.teacher.init!r} already names one',
                             "drop face_pretrain from config.stages, or set --config.teacher.init=''")
  if not config.face_data.name:
    raise errors.ConfigError('config.face_data.name: stage face_pretrain trains a face net to recognise '
                             'identities, and no dataset of them is named',
                             'name a TFDS builder whose labels are identities in --config.face_data.name')
  if config.face_data.holdout_every < 2:
    raise errors.ConfigError(f'config.face_data.holdout_every must be >= 2 (every n-th identity image is held '
                             f'out to evaluate the face net), got {config.face_data.holdout_every}',
                             'set --config.face_data.holdout_every=10')
  pipeline.validate(config.face_data, 'face_data')


def _split(config, data_dir: str):
  examples = pipeline.load(config.face_data, config.face_data.split, data_dir=data_dir)
  return pipeline.holdout_split(examples, config.face_data.holdout_every)


def train_examples(config, data_dir: str) -> pipeline.Examples:
  """What this stage trains on (config.face_data, not config.data): its budget in epochs counts these."""
  return _split(config, data_dir)[0]


def setup(config, ctx: Context):
  train, held_out = _split(config, ctx.data_dir)
  # Identity data has no test fold of the expression benchmark to protect: the held-out images of the training
  # identities choose the checkpoint and are also what its summary reports.
  splits = pipeline.Splits(train, held_out, held_out)
  model = face_nets.build(config.teacher, len(train.class_names), models.dtype(config), parallel.AXIS)
  variables = state.init_variables(model, ctx.rng, config.face_data.image_size)
  initial = state.create_state(model, variables, config.stage_face_pretrain, ctx.rng)
  return classification.stage(NAME, state=initial, stage_cfg=config.stage_face_pretrain, data_cfg=config.face_data,
                              splits=splits, mesh=ctx.mesh)


def export_trained(teacher: ml_collections.ConfigDict, stage_dir: str, output: str, input_size: int,
                   dtype: Any, mesh) -> None:
  """Writes the face net trained in `stage_dir` (a face_pretrain stage) as a face-net directory without its identity
  classifier, as `python -m fn2en_jax.convert` writes a converted one."""
  module = face_nets.build(teacher, num_classes=1, dtype=dtype)
  variables = state.abstract_variables(module, input_size, mesh)
  pattern = face_nets.classifier_pattern(teacher.model)
  restored = checkpoint.restore_into(checkpoint.trained_state_path(stage_dir), variables, reinit=(pattern,),
                                     skip=(pattern,))
  face_nets.save(output, teacher.model, face_nets.model_kwargs(teacher),
                 face_nets.without_classifier(teacher.model, restored)['params'],
                 input_size, batch_stats=restored.get('batch_stats'))
