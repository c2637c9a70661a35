"""What the cross-entropy stages (face_pretrain, face, b, scratch) share: their train step, eval step and summary."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax

from fn2en_jax import losses, metrics
from fn2en_jax.data import pipeline
from fn2en_jax.train import loop, parallel
from fn2en_jax.train.state import TrainState


def step_rng(state: TrainState) -> jax.Array:
  """Dropout key: new every step, different on every replica, a pure function of the state."""
  return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), lax.axis_index(parallel.AXIS))


def train_step(state: TrainState, batch: dict, aux: Any, *, label_smoothing: float):
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


# Checkpoints are ranked by validation accuracy, equal accuracies by the validation cross-entropy: on a few hundred
# faces accuracy moves in steps of a face or two, and the loss separates states that classify as many.
SELECTION = loop.Selection(metric='accuracy', mode='max', tiebreak='loss')


def eval_step(state: TrainState, batch: dict, aux: Any, *, probabilities: bool = False) -> dict:
  """Per example: the prediction, label and loss; with `probabilities` also every class's probability, from the
  same forward pass (evaluate's report asks for them; training's evaluations do not carry examples x classes
  floats to the host, which for an identity classifier of thousands of classes would be large)."""
  del aux
  logits = state.apply_fn(state.variables, batch['image'], train=False).astype(jnp.float32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  out = {'prediction': jnp.argmax(logits, -1).astype(jnp.int32), 'label': batch['label'], 'loss': loss,
         'mask': batch['mask']}
  if probabilities:
    out['probabilities'] = jax.nn.softmax(logits, -1)
  return out


def summarize(outputs: dict[str, np.ndarray], class_names) -> dict:
  keep = outputs['mask'].astype(bool)
  report = metrics.classification_report(outputs['label'][keep], outputs['prediction'][keep], class_names)
  return {**report, 'loss': float(outputs['loss'][keep].mean())}


def step_for(stage_cfg: ml_collections.ConfigDict) -> Callable:
  """The train step of a classifying stage with its config's fields bound: what the stage and bench run."""
  return functools.partial(train_step, label_smoothing=stage_cfg.label_smoothing)


def stage(name: str, *, state: TrainState, stage_cfg: ml_collections.ConfigDict,
          data_cfg: ml_collections.ConfigDict, splits: pipeline.Splits, mesh) -> loop.Stage:
  return loop.Stage(
      name=name, state=parallel.replicate(state, mesh), aux=None, hparams=stage_cfg, data_cfg=data_cfg,
      train_examples=splits.train, validation_examples=splits.validation, eval_examples=splits.test,
      selection=SELECTION,
      train_step=step_for(stage_cfg), eval_step=eval_step,
      summarize=functools.partial(summarize, class_names=splits.train.class_names))
