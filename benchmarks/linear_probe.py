"""The linear probe of a face net's frozen features: what the fine-tuned face stage has to beat.

  python benchmarks/linear_probe.py --config=configs/ck_plus_48_dlib.py \
      --config.data.manual_dir=$HOME/data/CK+48 --config.teacher.init=$HOME/face_nets/dlib_resnet [--tap=embedding]

The config's own fold, training subjects and validation subjects (`pipeline.splits`): the face net's `tap` of each
training face (its centre crop and its mirror image) and of each validation face is computed once, and a
multinomial logistic regression is fitted on the training rows by full-batch L-BFGS, for each L2 strength of
--l2; the validation accuracy of each is printed, and the best one. The test fold is not read.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets

_CONFIG = config_flags.DEFINE_config_file('config', None, 'An experiment config (configs/*.py).')
_TAP = flags.DEFINE_string('tap', 'embedding', 'The face net layer whose features are probed (flattened).')
_L2 = flags.DEFINE_list('l2', ['1e-4', '1e-3', '1e-2', '1e-1'], 'L2 strengths to try.')
_STEPS = flags.DEFINE_integer('steps', 500, 'L-BFGS iterations.')


def features(config, examples: pipeline.Examples, tap: str, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
  module, variables, _ = face_nets.load(config.teacher.init)
  apply = jax.jit(functools.partial(module.apply, train=False, tap=tap))
  images = pipeline.eval_arrays(examples, config.data)['image']
  if mirror:
    images = np.concatenate([images, images[:, :, ::-1]])
  rows = [np.asarray(apply(variables, images[i:i + 64])).reshape(len(images[i:i + 64]), -1)
          for i in range(0, len(images), 64)]
  labels = np.tile(examples.labels, 2 if mirror else 1)
  return np.concatenate(rows), labels


def fit(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, steps: int):
  mean, std = x.mean(0), x.std(0) + 1e-6  # standardised: one L2 scale serves any tap
  x = jnp.asarray((x - mean) / std)
  params = {'w': jnp.zeros((x.shape[1], num_classes)), 'b': jnp.zeros(num_classes)}

  def loss(p):
    logits = x @ p['w'] + p['b']
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + l2 * jnp.sum(p['w'] ** 2)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  @jax.jit
  def step(carry, _):
    p, s = carry
    value, grad = value_and_grad(p, state=s)
    updates, s = solver.update(grad, s, p, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(p, updates), s), value

  (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=steps)
  return lambda z: np.asarray(((z - mean) / std) @ params['w'] + params['b']).argmax(-1)


def main(argv):
  del argv
  config = _CONFIG.value
  data_dir = os.path.abspath(os.path.expanduser(config.data_dir))
  splits = pipeline.splits(config.data, data_dir)
  x_train, y_train = features(config, splits.train, _TAP.value, mirror=True)
  x_val, y_val = features(config, splits.validation, _TAP.value, mirror=False)
  scores = {}
  for l2 in map(float, _L2.value):
    predict = fit(x_train, y_train, len(splits.train.class_names), l2, _STEPS.value)
    scores[l2] = float(np.mean(predict(x_val) == y_val))
  best = max(scores, key=scores.get)
  print(json.dumps({'tap': _TAP.value, 'features': x_train.shape[1], 'train_rows': len(x_train),
                    'validation_faces': len(x_val), 'validation_accuracy_by_l2': scores,
                    'best_l2': best, 'best_validation_accuracy': scores[best]}, indent=2))


if __name__ == '__main__':
  app.run(main)
