"""What the cross-entropy stages (face_pretrain, face, b, scratch) share: their step, eval step and initialisers."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from fn2en_jax import evaluate, losses
from fn2en_jax.data import pipeline
from fn2en_jax.models.expnet import ExpNet
from fn2en_jax.train import loop, parallel
from fn2en_jax.train.state import TrainState, make_optimizer

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def dtype(config: ml_collections.ConfigDict):
  if config.dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}')
  return DTYPES[config.dtype]


def step_rng(state: TrainState) -> jax.Array:
  """Dropout key: new every step, different on every replica, a pure function of the state."""
  return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), lax.axis_index(parallel.AXIS))


def init_variables(model, rng: jax.Array, image_size: int, **kwargs) -> dict:
  """Random initial variables. Compiling a net's initialisers is slower than running them: XLA's partitionable
  threefry and its full optimisation made this take ~30 s on a CPU for a thin VGG; without both it takes ~2 s."""
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  with jax.threefry_partitionable(False):
    init = jax.jit(functools.partial(model.init, train=False, **kwargs)).lower({'params': rng}, images)
    return init.compile({'xla_backend_optimization_level': 0})({'params': rng}, images)


def abstract_variables(model, image_size: int, mesh, **kwargs) -> dict:
  """Shapes, dtypes and (replicated) shardings of `model`'s variables, for a checkpoint to fill: nothing is
  initialised or compiled for weights that are about to be overwritten."""
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False, **kwargs), {'params': jax.random.key(0)}, images)
  sharding = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def create_state(model, variables: dict, stage_cfg: ml_collections.ConfigDict, rng: jax.Array,
                 **apply_kwargs) -> TrainState:
  return TrainState.create(apply_fn=functools.partial(model.apply, **apply_kwargs), params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}), tx=make_optimizer(stage_cfg),
                           rng=jax.random.key_data(rng))


def classification_train_step(state: TrainState, batch: dict, aux: Any, *, label_smoothing: float):
  """One cross-entropy step on this replica's slice of the batch; gradients, BN stats and metrics are averaged."""
  del aux
  rng = step_rng(state)

  def loss_fn(params):
    logits, updates = state.apply_fn({'params': params, 'batch_stats': state.batch_stats}, batch['image'],
                                     train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
    return losses.cross_entropy(logits, batch['label'], label_smoothing), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = lax.pmean(grads, parallel.AXIS)
  batch_stats = lax.pmean(updates.get('batch_stats', {}), parallel.AXIS)
  metrics = {'loss': loss, 'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}
  return state.apply_gradients(grads, batch_stats), lax.pmean(metrics, parallel.AXIS)


def classification_eval_step(state: TrainState, batch: dict, aux: Any) -> dict:
  del aux
  logits = state.apply_fn(state.variables, batch['image'], train=False)
  return {'prediction': jnp.argmax(logits, -1).astype(jnp.int32), 'label': batch['label'], 'mask': batch['mask']}


def summarize_classification(outputs: dict[str, np.ndarray], class_names) -> dict:
  keep = outputs['mask'].astype(bool)
  return evaluate.classification_report(outputs['label'][keep], outputs['prediction'][keep], class_names)


def classification_stage(name: str, *, state: TrainState, stage_cfg: ml_collections.ConfigDict,
                         data_cfg: ml_collections.ConfigDict, train: pipeline.Examples,
                         test: pipeline.Examples, mesh) -> loop.Stage:
  step = functools.partial(classification_train_step, label_smoothing=stage_cfg.label_smoothing)
  return loop.Stage(
      name=name, state=parallel.replicate(state, mesh), aux=None, hparams=stage_cfg, data_cfg=data_cfg,
      train_examples=train, eval_examples=test, train_step=step, eval_step=classification_eval_step,
      summarize=functools.partial(summarize_classification, class_names=train.class_names))


def expression_splits(config: ml_collections.ConfigDict, data_dir: str):
  """(train, test) of the expression dataset by the config's protocol: an official eval split (SFEW's
  validation), TFD's official fold, or a subject-disjoint fold; then `data.extra_train` is appended to train."""
  data = config.data
  examples = pipeline.load(data, data.split, data_dir=data_dir)
  if data.eval_split:
    train, test = examples, pipeline.load(data, data.eval_split, data_dir=data_dir)
  elif data.protocol == 'tfd_folds':
    train, test = pipeline.tfd_split(examples, data.fold, valid_in_train=data.tfd_valid_in_train)
  elif data.protocol == 'leave_one_subject_out':
    train, test = pipeline.leave_one_subject_out_split(examples, data.fold, data.num_folds)
  else:
    train, test = pipeline.subject_split(examples, data.fold, data.num_folds)
  return pipeline.with_extra_train(train, data, data_dir=data_dir), test


def student(config: ml_collections.ConfigDict, num_classes: int, adapter_channels: int | None = None):
  s = config.student
  return ExpNet(num_classes=num_classes, widths=tuple(s.widths), fc_dim=s.fc_dim, dropout=s.dropout,
                adapter_channels=adapter_channels, axis_name=parallel.AXIS, dtype=dtype(config))
