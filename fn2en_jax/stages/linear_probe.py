"""The face stage's first step: a linear probe of the pretrained features, fitted once, as the fresh classifier's
start (LP-FT: linear probe, then fine-tune).

Why: a pretrained face net's embedding is a strong expression feature on its own (dlib's, on CK+48: about 90% of
the validation faces by a linear probe), but a classifier initialised at random on it gives near-uniform logits,
and the first gradients of fine-tuning carry that randomness into every pretrained layer. Fitted first, the
classifier starts where the frozen features allow, and fine-tuning only has to improve on it.

The features of the training faces (each centre crop and its mirror image: the evaluation view and the flip the
training augmentation also makes) are computed once; a multinomial logistic regression is fitted on them,
standardised, by full-batch L-BFGS for each L2 strength of `linear_probe_l2`; the strength with the best
validation accuracy is kept (without a validation set, the largest: the most regularised) and folded back into
the classifier's kernel and bias, so that the net is unchanged otherwise. The test set is not read.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fn2en_jax import errors, workdir as workdir_lib
from fn2en_jax.data import pipeline
from fn2en_jax.models import expnet, face_nets
from fn2en_jax.train import checkpoint, parallel, state

BATCH = 64


def features(apply_fn, variables, examples: pipeline.Examples, data_cfg, *, mirror: bool):
  """(rows, labels): `apply_fn(variables, images)` of every example's evaluation view (and its mirror image)."""
  images = pipeline.eval_arrays(examples, data_cfg)['image']
  labels = examples.labels
  if mirror:
    images, labels = np.concatenate([images, images[:, :, ::-1]]), np.tile(labels, 2)
  rows = [np.asarray(apply_fn(variables, images[i:i + BATCH]), np.float32) for i in range(0, len(images), BATCH)]
  return np.concatenate(rows).reshape(len(images), -1), labels


@functools.partial(jax.jit, static_argnames=('num_classes', 'steps'))
def _solve(z: jax.Array, labels: jax.Array, l2: jax.Array, *, num_classes: int, steps: int) -> dict:
  """argmin over (w, b) of mean softmax cross-entropy of z @ w + b, plus l2 * |w|^2: full-batch L-BFGS."""

  def loss(p):
    logits = z @ p['w'] + p['b']
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean() + l2 * jnp.sum(p['w'] ** 2)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry, _):
    p, s = carry
    value, grad = value_and_grad(p, state=s)
    updates, s = solver.update(grad, s, p, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(p, updates), s), None

  params = {'w': jnp.zeros((z.shape[1], num_classes)), 'b': jnp.zeros(num_classes)}
  (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=steps)
  return params


def fit(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
  """(kernel, bias) of the L2-regularised softmax regression on `x`, for raw (unstandardised) features.

  Fitted on standardised features, so that one L2 scale serves any tap, then folded back:
  ((x - m) / s) @ w + b = x @ (w / s) + (b - (m / s) @ w)."""
  mean, std = x.mean(0), x.std(0) + 1e-6
  params = _solve(jnp.asarray((x - mean) / std), jnp.asarray(y), jnp.float32(l2), num_classes=num_classes,
                  steps=steps)
  w, b = np.asarray(params['w'], np.float64), np.asarray(params['b'], np.float64)
  return (w / std[:, None]).astype(np.float32), (b - (mean / std) @ w).astype(np.float32)


def accuracy(kernel, bias, x, y) -> float:
  return float(np.mean((x @ kernel + bias).argmax(-1) == y))


def probe(apply_fn, variables, splits: pipeline.Splits, data_cfg, *, l2s, steps: int) -> tuple[dict, dict]:
  """((kernel, bias) as {'kernel', 'bias'}, its record): the probe chosen on `splits.validation`."""
  x, y = features(apply_fn, variables, splits.train, data_cfg, mirror=True)
  num_classes = len(splits.train.class_names)
  fits = {float(l2): fit(x, y, num_classes, float(l2), steps) for l2 in l2s}
  record = {'train_rows': len(x), 'train_accuracy': {l2: accuracy(*f, x, y) for l2, f in fits.items()}}
  if splits.validation is not None:
    xv, yv = features(apply_fn, variables, splits.validation, data_cfg, mirror=False)
    scores = {l2: accuracy(*f, xv, yv) for l2, f in fits.items()}
    chosen = max(sorted(scores, reverse=True), key=scores.get)  # equal accuracies: the more regularised
    record.update(validation_accuracy=scores, chosen_by='validation accuracy')
  else:
    chosen = max(fits)
    record.update(chosen_by='no validation set: the largest L2')
  record['l2'] = chosen
  kernel, bias = fits[chosen]
  return {'kernel': kernel, 'bias': bias}, record


def trained_net(workdir: str, stage: str, tap: str | None):
  """(config, apply_fn, variables, tap) of the net `stage` (face or a) trained in `workdir`, from its chosen
  checkpoint (the best on validation), for `probe` to measure what that stage's features hold: the fine-tuned face
  net at `tap` (default the teacher's tap), or the student's pool5 after stage a. Used by
  benchmarks/linear_probe.py; kept here, beside `probe`, so that it is importable without that script's flags."""
  config = workdir_lib.load_config(workdir)
  stage_dir = os.path.join(workdir, stage)
  summary = os.path.join(stage_dir, 'summary.json')
  if not os.path.exists(summary):
    raise errors.WorkdirError(f'{stage_dir}: stage {stage!r} has not finished in this workdir',
                              'run it first, or pass the workdir of a run that has it (a fold_<i> folder)')
  if stage == 'face':
    with open(summary) as f:
      num_classes = len(json.load(f)['class_names'])
    module, tap = face_nets.build(config.teacher, num_classes, jnp.float32), tap or config.teacher.tap
  else:
    if tap not in (None, 'pool5'):
      raise errors.ConfigError(f"--tap={tap}: --stage=a probes the student's pool5", 'leave --tap out')
    # Only the trunk is read (pool5 needs nothing else; stage a's adapter stays behind, as in stage b).
    module, tap = expnet.from_config(config, num_classes=1), 'pool5'
  mesh = parallel.make_mesh(jax.local_devices()[:1])
  target = state.abstract_variables(module, config.data.image_size, mesh, tap=tap)
  target = {c: v for c, v in target.items() if c in ('params', 'batch_stats') and v}
  variables = checkpoint.restore_subset(checkpoint.trained_state_path(stage_dir), target)
  return config, jax.jit(functools.partial(module.apply, train=False, tap=tap)), variables, tap
