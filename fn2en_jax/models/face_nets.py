"""Face nets (teachers) as a config choice: build the module, load pretrained weights, apply a tap.

A converted or trained face net lives in a directory `init` holding an Orbax PyTree checkpoint `init/params`
(`{'params': ...}`) and `init/face_net.json` ({"model": ..., "model_kwargs": {...}}): the architecture and the
input preprocessing travel with the weights, so nobody has to remember them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import ml_collections

from fn2en_jax.models.vgg_face import VGGFace

MODELS = {'vgg_face': VGGFace}
# The layer that maps features to classes: dropped when a face net is fine-tuned on another label set.
CLASSIFIER = {'vgg_face': 'fc8'}
META = 'face_net.json'


def read_meta(init: str) -> dict:
  path = os.path.join(init, META)
  if not os.path.exists(path):
    raise FileNotFoundError(f'teacher.init={init!r}: {path} not found; expected a face net written by '
                            '`python -m fn2en_jax.convert` or by the face_pretrain stage')
  with open(path) as f:
    return json.load(f)


def write_meta(init: str, model: str, model_kwargs: dict) -> None:
  os.makedirs(init, exist_ok=True)
  with open(os.path.join(init, META), 'w') as f:
    json.dump({'model': model, 'model_kwargs': model_kwargs}, f, indent=2)


def model_kwargs(teacher: ml_collections.ConfigDict) -> dict:
  """The architecture fields a face net is built from, as `config.teacher` gives them."""
  if teacher.model not in MODELS:
    raise ValueError(f'teacher.model must be one of {sorted(MODELS)}, got {teacher.model!r}')
  return {'width': teacher.width, 'fc_dim': teacher.fc_dim, 'dropout': teacher.dropout}


def build(teacher: ml_collections.ConfigDict, num_classes: int, dtype: Any) -> nn.Module:
  """The face net `config.teacher` names; with `teacher.init` set, the architecture stored beside its weights."""
  if teacher.init:
    meta = read_meta(teacher.init)
    name, kwargs = meta['model'], meta['model_kwargs']
    if name != teacher.model:
      raise ValueError(f'teacher.model={teacher.model!r} but {teacher.init} holds a {name!r} face net')
  else:
    name, kwargs = teacher.model, model_kwargs(teacher)
  return MODELS[name](num_classes=num_classes, dtype=dtype, **kwargs)
