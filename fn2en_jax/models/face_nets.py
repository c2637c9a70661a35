"""Face nets (teachers) as a config choice: build the module, save and load pretrained weights, apply a tap.

A converted or trained face net lives in a directory `init` holding an Orbax PyTree checkpoint `init/params`
(`{'params': ...}`) and `init/face_net.json` ({"model": ..., "model_kwargs": {...}, "input_size": ...}): the
architecture and the input preprocessing travel with the weights, so nobody has to remember them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from fn2en_jax import errors
from fn2en_jax.models.dlib_resnet import DlibResNet
from fn2en_jax.models.facenet import FaceNet
from fn2en_jax.models.sface import SFace
from fn2en_jax.models.vgg_face import VGGFace

MODELS = {'vgg_face': VGGFace, 'dlib_resnet': DlibResNet, 'sface': SFace, 'facenet': FaceNet}
# The layer that maps features to classes: dropped when a face net is fine-tuned on another label set.
CLASSIFIER = {'vgg_face': 'fc8', 'dlib_resnet': 'classifier', 'sface': 'classifier', 'facenet': 'classifier'}
# The tap the classifier reads (dropout, where there is one, acts only in training): what a linear probe fits.
# FaceNet's is its prelogits, as in facenet's own training: its `embedding` is their L2 normalisation.
CLASSIFIER_INPUT = {'vgg_face': 'fc7', 'dlib_resnet': 'embedding', 'sface': 'embedding', 'facenet': 'prelogits'}
META = 'face_net.json'
PARAMS = 'params'


def read_meta(init: str) -> dict:
  path = os.path.join(init, META)
  if not os.path.exists(path):
    raise errors.InputError(f'teacher.init={init!r}: {path} not found; expected a face net directory',
                            'convert one with `python -m fn2en_jax.convert` (docs/face_nets.md), or point '
                            'teacher.init at a directory written by the face_pretrain stage of a k-fold run')
  with open(path) as f:
    return json.load(f)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks `config.teacher`: a known architecture, and a readable face net where `init` names one."""
  teacher = config.teacher
  if teacher.model not in MODELS:
    raise errors.ConfigError(f'config.teacher.model must be one of {sorted(MODELS)}, got {teacher.model!r}',
                             'set --config.teacher.model to one of them')
  if teacher.init:
    meta = read_meta(teacher.init)
    if meta['model'] != teacher.model:
      raise errors.ConfigError(f"config.teacher.model={teacher.model!r} but {teacher.init} holds a "
                               f"{meta['model']!r} face net", f"set --config.teacher.model={meta['model']}")


def write_meta(init: str, model: str, model_kwargs: dict, input_size: int | None = None) -> None:
  """`input_size`: the square input the weights were trained at, where they fix it (what `features` resizes to)."""
  os.makedirs(init, exist_ok=True)
  meta = {'model': model, 'model_kwargs': model_kwargs}
  if input_size is not None:
    meta['input_size'] = input_size
  with open(os.path.join(init, META), 'w') as f:
    json.dump(meta, f, indent=2)


def _stored_kwargs(meta: dict) -> dict:
  # JSON gives lists; module fields must stay hashable (modules are static arguments of jitted steps).
  return {k: tuple(v) if isinstance(v, list) else v for k, v in meta['model_kwargs'].items()}


def model_kwargs(teacher: ml_collections.ConfigDict) -> dict:
  """The architecture fields a face net is built from, as `config.teacher` gives them."""
  if teacher.model == 'vgg_face':
    return {'width': teacher.width, 'fc_dim': teacher.fc_dim, 'dropout': teacher.dropout,
            'batch_norm': teacher.batch_norm}
  if teacher.model in ('dlib_resnet', 'sface', 'facenet'):
    return {'width': teacher.width}
  raise ValueError(f'teacher.model must be one of {sorted(MODELS)}, got {teacher.model!r}')


def build(teacher: ml_collections.ConfigDict, num_classes: int, dtype: Any, axis_name: str | None = None
          ) -> nn.Module:
  """The face net `config.teacher` names; with `teacher.init` set, the architecture stored beside its weights.

  `axis_name`: the data-parallel axis that trained BatchNorm statistics (VGG-16-BN, SFace, FaceNet's bottleneck) are
  averaged over, as the student's are; None outside a data-parallel step.
  """
  if teacher.init:
    meta = read_meta(teacher.init)
    name, kwargs = meta['model'], _stored_kwargs(meta)
  else:
    name, kwargs = teacher.model, model_kwargs(teacher)
  module = MODELS[name]
  if 'axis_name' in module.__dataclass_fields__:
    kwargs = {**kwargs, 'axis_name': axis_name}
  return module(num_classes=num_classes, dtype=dtype, **kwargs)


def classifier_pattern(model: str) -> str:
  """The parameters that map features to classes: initialised anew when a face net moves to another label set."""
  return f'^params/{CLASSIFIER[model]}/'


def without_classifier(model: str, variables: dict) -> dict:
  """What of a face net carries over to another label set: every variable but the classifier's."""
  kept = {'params': {k: v for k, v in variables['params'].items() if k != CLASSIFIER[model]}}
  if variables.get('batch_stats'):
    kept['batch_stats'] = variables['batch_stats']
  return kept


def _num_classes(model: str, params: dict) -> int:
  # Without its classifier a face net still applies at every other tap; any class count builds it.
  classifier = params.get(CLASSIFIER[model])
  return classifier['kernel'].shape[-1] if classifier else 1


def _shapes(tree: dict) -> dict:
  return {'/'.join(k): np.shape(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _mismatch(model: str, what: str, input_size: int, want: dict, have: dict) -> ValueError:
  diff = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
  return ValueError(f'{model} {what} do not match the module at input {input_size}: '
                    + ', '.join(f'{k}: expected {want.get(k)}, got {have.get(k)}' for k in diff[:8]))


def check_params(model: str, module: nn.Module, params: dict, input_size: int,
                 batch_stats: dict | None = None) -> None:
  """Raises unless `params` are exactly what `module` creates at `input_size`, the classifier being optional, and
  so are `batch_stats` (the BatchNorm statistics) where the module has BatchNorm."""
  images = jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), images)
  expected = variables['params']
  if CLASSIFIER[model] not in params:
    expected = {k: v for k, v in expected.items() if k != CLASSIFIER[model]}
  want, have = _shapes(expected), _shapes(params)
  if want != have:
    raise _mismatch(model, 'params', input_size, want, have)
  want_stats = _shapes(variables.get('batch_stats', {}))
  if want_stats and not batch_stats:
    raise ValueError(f'{model} has BatchNorm: its batch_stats must be saved too')
  if want_stats != _shapes(batch_stats or {}):
    raise _mismatch(model, 'batch_stats', input_size, want_stats, _shapes(batch_stats or {}))


def save(init: str, model: str, model_kwargs: dict, params: dict, input_size: int,
         batch_stats: dict | None = None) -> None:
  """Writes a face net that `build`, the `face` stage and `features` read back; checks it first.

  `batch_stats`: the BatchNorm statistics of a net that has them (VGG-16-BN, SFace), saved beside the params.
  """
  params = jax.tree.map(lambda a: np.ascontiguousarray(a, np.float32), params)
  module = MODELS[model](num_classes=_num_classes(model, params), **model_kwargs)
  check_params(model, module, params, input_size, batch_stats)
  variables = {'params': params}
  if batch_stats:
    variables['batch_stats'] = jax.tree.map(lambda a: np.ascontiguousarray(a, np.float32), batch_stats)
  with ocp.PyTreeCheckpointer() as checkpointer:
    checkpointer.save(os.path.join(os.path.abspath(init), PARAMS), variables, force=True)
  write_meta(init, model, model_kwargs, input_size)


def load(init: str, dtype: Any = jnp.float32) -> tuple[nn.Module, dict, dict]:
  """(module, variables, meta) of the face net in `init`: all of its params (and BatchNorm statistics)."""
  meta = read_meta(init)
  with ocp.PyTreeCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(os.path.abspath(init), PARAMS))
  module = MODELS[meta['model']](num_classes=_num_classes(meta['model'], variables['params']), dtype=dtype,
                                 **_stored_kwargs(meta))
  return module, variables, meta
