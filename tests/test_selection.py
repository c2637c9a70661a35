"""Model selection on validation subjects: the split, the best checkpoint (not the best on test, not the last),
early stopping, budgets in epochs, and the face stage's linear probe before fine-tuning (LP-FT)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fn2en_jax import defaults, errors
from fn2en_jax.data import pipeline
from fn2en_jax.stages import classification
from fn2en_jax.train import budget, checkpoint, loop, parallel, state as train_state

CLASSES = ('a', 'b', 'c')


def _examples(labels, subjects) -> pipeline.Examples:
  source = [{'image': np.full((4, 4, 3), i, np.uint8), 'label': int(y)} for i, y in enumerate(labels)]
  return pipeline.Examples(source, np.arange(len(labels)), np.asarray(labels, np.int32), np.asarray(subjects),
                           CLASSES)


# --- The validation split -------------------------------------------------------------------------------------------

def test_validation_subjects_are_a_deterministic_disjoint_tenth_of_the_training_subjects():
  subjects = [f'S{i:03d}' for i in range(40) for _ in range(3)]
  train = _examples(np.arange(len(subjects)) % 3, subjects)
  rest, validation = pipeline.validation_split(train, 0.1)
  held_out = set(validation.subjects)
  assert len(held_out) == 4 and not held_out & set(rest.subjects)
  assert set(rest.subjects) | held_out == set(subjects)
  assert len(validation) == 12 and len(rest) == 108  # every example of a held-out subject, and only those
  # A function of the subject set alone: the same subjects whatever the order of the examples.
  order = np.random.default_rng(0).permutation(len(train))
  _, shuffled = pipeline.validation_split(train.subset(order), 0.1)
  assert set(shuffled.subjects) == held_out
  assert held_out == {'S000', 'S010', 'S020', 'S030'}  # evenly spaced in the sorted order


def test_validation_that_leaves_nothing_to_train_on_is_a_config_error():
  train = _examples([0, 1], ['S1', 'S2'])
  with pytest.raises(errors.ConfigError, match='config.data.validation'):
    pipeline.validation_split(train, 0.9)


def test_splits_keep_train_validation_and_test_subjects_apart(tiny_run):
  _, data_dir, _ = tiny_run
  import tiny_config  # pylint: disable=import-outside-toplevel
  data = tiny_config.get_config().data
  parts = pipeline.splits(data, str(data_dir))
  train, validation, test = (set(p.subjects) for p in parts)
  assert validation and not train & validation and not train & test and not validation & test
  assert len(parts.train) + len(parts.validation) + len(parts.test) == 64  # 8 subjects x 8 faces
  data.validation = 0.0
  assert pipeline.splits(data, str(data_dir)).validation is None


# --- The best checkpoint --------------------------------------------------------------------------------------------

# The "model" is a vector of class scores that every example is predicted by (argmax). Each step sets it to the next
# row: step 1 predicts a, step 2 b, step 3 c, step 4 a again.
SCORES = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
VALIDATION_LABELS = [1, 1, 1, 1]        # best on validation: step 2 (accuracy 1)
TEST_LABELS = [1, 2, 2, 2]              # step 2: 0.25; the best on test would be step 3 (0.75); the last step: 0


def _scripted_step(state, batch, aux):
  del batch, aux
  new = state.replace(step=state.step + 1, params={'scores': jnp.asarray(SCORES)[state.step]})
  return new, {'loss': jnp.float32(0.0)}


def _eval_step(state, batch, aux):
  del aux
  n = batch['label'].shape[0]
  prediction = jnp.full((n,), jnp.argmax(state.params['scores']), jnp.int32)
  return {'prediction': prediction, 'label': batch['label'], 'loss': jnp.zeros((n,)), 'mask': batch['mask']}


def _scripted_stage(**hparams) -> loop.Stage:
  mesh = parallel.make_mesh()
  hp = defaults.stage_config(num_steps=4, batch_size=4, log_every=1, eval_every=1, checkpoint_every=2)
  hp.update(hparams)
  initial = train_state.TrainState.create(apply_fn=None, params={'scores': jnp.zeros(3)}, batch_stats={},
                                          tx=optax.identity(), rng=jax.random.key_data(jax.random.key(0)))
  data = defaults.data_config(image_size=4, crop_scale=1.0, flip=False, num_threads=1, prefetch=1)
  return loop.Stage(
      name='scripted', state=parallel.replicate(initial, mesh), aux=None, hparams=hp, data_cfg=data,
      train_examples=_examples([0, 1, 2, 0], ['S1'] * 4),
      validation_examples=_examples(VALIDATION_LABELS, ['S2'] * 4),
      eval_examples=_examples(TEST_LABELS, ['S3'] * 4), selection=classification.SELECTION,
      train_step=_scripted_step, eval_step=_eval_step,
      summarize=lambda outputs: classification.summarize(outputs, CLASSES))


def test_the_reported_checkpoint_is_the_best_on_validation_not_on_test_nor_the_last(tmp_path):
  summary = loop.run(_scripted_stage(), workdir=str(tmp_path), mesh=parallel.make_mesh(), seed=0)
  assert summary['selected_step'] == 2
  assert summary['validation']['accuracy'] == 1.0
  assert summary['accuracy'] == 0.25  # step 2 on the test set; step 3 would give 0.75, step 4 0.0
  assert 'validation accuracy' in summary['selected_by']
  stage_dir = tmp_path / 'scripted'
  assert checkpoint.best_record(str(stage_dir))['step'] == 2
  assert checkpoint.trained_state_path(str(stage_dir)) == str(stage_dir / 'best' / '2' / 'state')
  assert loop.is_finished(str(tmp_path), 'scripted', _scripted_stage().hparams)
  # Run again: nothing left to train, the same chosen state and the same test number.
  again = loop.run(_scripted_stage(), workdir=str(tmp_path), mesh=parallel.make_mesh(), seed=0)
  assert (again['selected_step'], again['accuracy']) == (2, 0.25)


def test_without_validation_the_last_step_is_reported(tmp_path):
  import dataclasses  # pylint: disable=import-outside-toplevel
  stage = dataclasses.replace(_scripted_stage(), validation_examples=None)
  summary = loop.run(stage, workdir=str(tmp_path), mesh=parallel.make_mesh(), seed=0)
  assert summary['selected_step'] == 4 and summary['accuracy'] == 0.0 and 'validation' not in summary
  assert not (tmp_path / 'scripted' / 'best').exists()


def test_patience_stops_after_evaluations_without_improvement_and_the_stage_counts_as_finished(tmp_path):
  stage = _scripted_stage(num_steps=10, patience=1)
  summary = loop.run(stage, workdir=str(tmp_path), mesh=parallel.make_mesh(), seed=0)
  # Step 2 is best; step 3's evaluation is not better, and with patience 1 the stage ends there.
  assert summary['selected_step'] == 2 and summary['accuracy'] == 0.25
  mngr = checkpoint.manager(str(tmp_path / 'scripted'))
  assert mngr.latest_step() == 3
  mngr.close()
  assert loop.is_finished(str(tmp_path), 'scripted', stage.hparams)
  assert not loop.is_finished(str(tmp_path), 'scripted', _scripted_stage(num_steps=10, patience=2).hparams)


# --- Budgets in epochs ----------------------------------------------------------------------------------------------

def test_epochs_become_steps_of_the_runs_own_training_set():
  cfg = defaults.stage_config(batch_size=32, num_epochs=20.0, warmup_epochs=1.0, eval_every_epochs=1.0,
                              checkpoint_every_epochs=5.0)
  small, large = budget.resolve(cfg, 700), budget.resolve(cfg, 7000)
  assert (small.num_steps, small.warmup_steps, small.eval_every, small.checkpoint_every) == (
      round(20 * 700 / 32), round(700 / 32), round(700 / 32), round(5 * 700 / 32))
  assert large.num_steps == round(20 * 7000 / 32)
  # Unset epoch fields leave the step fields as they are.
  assert budget.resolve(defaults.stage_config(num_steps=7), 700).num_steps == 7


def test_budgeted_config_counts_the_fold_training_examples(tiny_run):
  _, data_dir, _ = tiny_run
  import tiny_config  # pylint: disable=import-outside-toplevel
  from fn2en_jax import stages  # pylint: disable=import-outside-toplevel
  config = tiny_config.get_config()
  config.stage_scratch.num_epochs = 3.0
  config.stage_face_pretrain.num_epochs = 2.0
  resolved = stages.budgeted(config, str(data_dir))
  train = pipeline.splits(config.data, str(data_dir)).train
  assert resolved.stage_scratch.num_steps == round(3 * len(train) / config.stage_scratch.batch_size)
  face_train = stages.STAGES['face_pretrain'].train_examples(config, str(data_dir))
  assert resolved.stage_face_pretrain.num_steps == round(2 * len(face_train) / 8)
  assert resolved.stage_b.num_steps == config.stage_b.num_steps == 4  # no epochs set: steps as given


# --- LP-FT: the face stage's linear probe, and the classifier's own rate -----------------------------------------------

def test_the_linear_probe_is_the_regularised_softmax_regression_folded_back_to_raw_features():
  import scipy.optimize  # pylint: disable=import-outside-toplevel  # an independent solver of the same objective
  from fn2en_jax.stages import linear_probe  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 40)
  # Features far from zero mean and unit scale (as a face net's embedding is), with a class signal in two columns.
  x = (rng.normal(size=(120, 5)) + np.eye(3, 5)[y] * 2.0) * [0.05, 0.1, 1.0, 3.0, 0.5] + 7.0
  kernel, bias = linear_probe.fit(x, y, 3, l2=0.01, steps=300)
  mean, std = x.mean(0), x.std(0) + 1e-6
  z = (x - mean) / std

  def objective(theta):
    w, b = theta[:15].reshape(5, 3), theta[15:]
    logits = z @ w + b
    logits = logits - logits.max(1, keepdims=True)
    nll = -(logits[np.arange(120), y] - np.log(np.exp(logits).sum(1))).mean()
    return nll + 0.01 * np.sum(w ** 2)

  theta = scipy.optimize.minimize(objective, np.zeros(18), method='L-BFGS-B', options=dict(gtol=1e-10)).x
  expected = z @ theta[:15].reshape(5, 3) + theta[15:]
  # The same minimiser (a strictly convex objective), applied to the raw features through the folded kernel.
  np.testing.assert_allclose(x @ kernel + bias, expected, atol=2e-3)
  assert linear_probe.accuracy(kernel, bias, x, y) == np.mean(expected.argmax(1) == y)


def test_the_probe_chooses_its_l2_on_the_validation_set_and_never_reads_the_test_set():
  from fn2en_jax.stages import linear_probe  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)

  def faces(n, subject):
    labels = rng.integers(0, 3, n)
    return _examples(labels, [subject] * n), labels

  train, _ = faces(60, 'S1')
  validation, _ = faces(12, 'S2')

  class Unreadable(list):
    def __getitem__(self, i):
      raise AssertionError('the probe read the test set')

  test = dataclasses_replace(_examples([0], ['S3']), source=Unreadable())
  apply_fn = lambda variables, images: images.mean(axis=(1, 2))  # any fixed feature map
  data = defaults.data_config(image_size=4, crop_scale=1.0, flip=False)
  fitted, record = linear_probe.probe(apply_fn, None, pipeline.Splits(train, validation, test), data,
                                      l2s=(1e-3, 1.0), steps=50)
  assert record['chosen_by'] == 'validation accuracy' and record['train_rows'] == 120  # 60 faces and their mirrors
  best = max(record['validation_accuracy'].values())
  assert record['validation_accuracy'][record['l2']] == best
  assert fitted['kernel'].shape == (3, 3) and fitted['bias'].shape == (3,)


def dataclasses_replace(examples, **changes):
  import dataclasses  # pylint: disable=import-outside-toplevel
  return dataclasses.replace(examples, **changes)


def _sgd(**overrides) -> ml_collections.ConfigDict:
  return defaults.stage_config(**{**dict(optimizer='sgd', momentum=0.0, weight_decay=0.0, learning_rate=0.1,
                                         schedule='constant', num_steps=4), **overrides})


def test_the_classifier_can_learn_at_a_multiple_of_the_rate_of_the_rest():
  params = {'classifier': {'kernel': jnp.ones((2, 2))}, 'trunk': {'kernel': jnp.ones((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = train_state.make_optimizer(_sgd(head_lr_scale=10.0), head='^params/classifier/')
  updates, _ = tx.update(grads, tx.init(params), params)
  # Plain SGD at a constant 0.1: the classifier moves by 10 x 0.1, the rest by 0.1.
  assert float(updates['classifier']['kernel'][0, 0]) == pytest.approx(-1.0)
  assert float(updates['trunk']['kernel'][0, 0]) == pytest.approx(-0.1)
  # Without a head pattern every parameter follows the one rate.
  tx = train_state.make_optimizer(_sgd(head_lr_scale=10.0))
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(updates['classifier']['kernel'][0, 0]) == float(updates['trunk']['kernel'][0, 0]) == pytest.approx(-0.1)
