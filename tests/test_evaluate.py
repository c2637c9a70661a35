import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from fn2en_jax import errors, metrics, results
from fn2en_jax import predictor as predictor_lib
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.commands import evaluate, visualize


def test_classification_report_by_hand():
  names = ('neutral', 'anger', 'happy', 'sadness')
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
  preds = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  report = metrics.classification_report(labels, preds, names)
  assert report['accuracy'] == pytest.approx(6 / 8)
  # neutral 3/4, anger 1/2, happy 2/2; sadness has no test example and does not count.
  assert report['mean_per_class_accuracy'] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
  counts = np.asarray(report['confusion_matrix'])
  assert counts[0, 1] == 1 and counts[1, 2] == 1  # rows are the true class
  assert counts.sum() == report['num_examples'] == 8
  assert report['class_names'] == list(names)


def test_results_table_rows_in_the_papers_order(tmp_path):
  summary = lambda acc: {'accuracy': acc, 'mean_per_class_accuracy': acc / 2, 'confusion_matrix': [[1, 0], [0, 1]],
                         'class_names': ['a', 'b'], 'num_examples': 2, 'wall_time_s': 1.5}
  summaries = {'b': summary(0.9), 'scratch': summary(0.5), 'face': summary(0.7), 'a': {'lp_loss': 0.1,
                                                                                         'wall_time_s': 2.0}}
  table = results.write_results(str(tmp_path), summaries, {'seed': 0}, 'the test split')
  rows = table.splitlines()[2:]
  assert rows == ['| Train from scratch (BN) | 50.00 | 25.00 |', '| Face net fine-tune (baseline) | 70.00 | 35.00 |',
                  '| FN2EN | 90.00 | 45.00 |']
  assert (tmp_path / 'results.md').read_text().startswith(table)
  assert '- a: 2.0 s' in (tmp_path / 'results.md').read_text()
  for stage in ('scratch', 'face', 'b'):
    assert (tmp_path / f'confusion_{stage}.png').stat().st_size > 1000
  assert not (tmp_path / 'confusion_a.png').exists()


# --- per-class scores and mistakes, against direct computations on the label and prediction arrays ------------------

def test_per_class_scores_against_the_examples():
  rng = np.random.default_rng(0)
  names = ('neutral', 'anger', 'happy', 'sadness', 'fear')
  labels = rng.integers(0, 4, 200)  # 'fear' is never the true class
  predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, 200))
  predictions[predictions == 3] = 2  # 'sadness' is never predicted
  counts = metrics.confusion_matrix(labels, predictions, len(names))
  scores = metrics.per_class_scores(counts, names)
  for c, name in enumerate(names):
    tp = np.sum((predictions == c) & (labels == c))
    precision = tp / np.sum(predictions == c) if np.any(predictions == c) else 0.0
    recall = tp / np.sum(labels == c) if np.any(labels == c) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert scores[name] == pytest.approx({'precision': precision, 'recall': recall, 'f1': f1,
                                          'support': int(np.sum(labels == c))})
  assert scores['sadness']['precision'] == 0.0 and scores['fear']['recall'] == 0.0
  assert 0 < scores['neutral']['f1'] < 1


def test_confident_mistakes_are_the_wrong_predictions_made_most_confidently():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(50, 4)) * 3
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  labels = rng.integers(0, 4, 50)
  mistakes = evaluate.confident_mistakes(labels, probabilities, 5)
  wrong = [(probabilities[i].max(), i) for i in range(50) if probabilities[i].argmax() != labels[i]]
  expected = [i for _, i in sorted(wrong, reverse=True)[:5]]
  assert [m['index'] for m in mistakes] == expected
  for m in mistakes:
    assert m['label'] == labels[m['index']] != m['prediction'] == probabilities[m['index']].argmax()
    assert m['confidence'] == pytest.approx(probabilities[m['index']].max())
  assert evaluate.confident_mistakes(labels, np.eye(4)[labels], 5) == []  # no mistakes, none to show


# --- python -m fn2en_jax.evaluate on finished workdirs -------------------------------------------------------------

def _evaluate_cli(workdir, *args, env=None):
  cmd = [sys.executable, '-m', 'fn2en_jax.evaluate', f'--workdir={workdir}', *args]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _check_run_report(workdir):
  """report.json against results.json (which the training loop wrote from its own final evaluation)."""
  trained = json.loads((workdir / 'results.json').read_text())['stages']
  report = json.loads((workdir / 'report.json').read_text())['stages']
  markdown = (workdir / 'report.md').read_text()
  assert list(report) == list(trained)
  for stage, expected in trained.items():
    got = report[stage]
    if stage == 'a':
      # The same program on the same inputs: the loop's jitted eval step on as many devices, the same test batches
      # and padding, the parameters restored bit for bit from the checkpoint training chose. Exact.
      assert got['lp_loss'] == expected['lp_loss']
      continue
    assert got['accuracy'] == expected['accuracy']
    assert got['mean_per_class_accuracy'] == expected['mean_per_class_accuracy']
    assert got['confusion_matrix'] == expected['confusion_matrix']
    counts = np.asarray(got['confusion_matrix'])
    np.testing.assert_allclose(got['confusion_matrix_rates'], counts / np.maximum(counts.sum(1, keepdims=True), 1))
    assert [s['support'] for s in got['per_class'].values()] == counts.sum(1).tolist()
    wrong = int(counts.sum() - np.trace(counts))
    assert len(got['mistakes']) == min(16, wrong)
    confidences = [m['confidence'] for m in got['mistakes']]
    assert confidences == sorted(confidences, reverse=True)
    for m in got['mistakes']:
      assert m['label'] != m['prediction']
      assert (m['true_class'], m['predicted_class']) == (got['class_names'][m['label']],
                                                          got['class_names'][m['prediction']])
    for figure in got['figures'].values():
      assert (workdir / figure).stat().st_size > 2000
      assert f'({figure})' in markdown
    assert f"Accuracy {100 * expected['accuracy']:.2f}%" in markdown
  assert not (workdir / '.report.tmp').exists()
  return report


def test_evaluate_reproduces_every_stage_of_the_tiny_run(tiny_run, tmp_path):
  workdir = tmp_path / 'work'
  shutil.copytree(tiny_run[0], workdir)
  done = _evaluate_cli(workdir)
  assert done.returncode == 0, done.stderr[-3000:]
  report = _check_run_report(workdir)
  assert set(report) == {'face_pretrain', 'face', 'a', 'b', 'scratch'}
  assert str(workdir / 'report.md') in done.stdout
  assert '| FN2EN |' in (workdir / 'report.md').read_text()


def test_evaluate_a_missing_or_unfinished_workdir_fails_in_one_line(tmp_path):
  done = _evaluate_cli(tmp_path / 'nowhere')
  assert done.returncode == errors.WORKDIR
  assert done.stderr.splitlines()[-2:] == [f"error: --workdir={tmp_path / 'nowhere'} does not exist",
                                           'remedy: pass the --workdir of a finished `python -m fn2en_jax.main` run']
  # The other mistake in-process: the command line's one-line form is checked above, and a process costs seconds.
  (tmp_path / 'empty').mkdir()
  with pytest.raises(errors.WorkdirError, match='neither config.json nor results.json') as info:
    evaluate.report(str(tmp_path / 'empty'))
  assert info.value.exit_code == errors.WORKDIR
  assert os.listdir(tmp_path / 'empty') == []


@pytest.fixture(scope='module')
def tiny_kfold(tmp_path_factory, tiny_run):
  """A finished 2-fold run of the tiny config's baseline alone (the k-fold machinery is the same for every stage;
  tests/test_kfold.py runs all of them): its steps are the tiny run's, which the shared compilation cache holds,
  and it reads the tiny run's dataset (folds are dealt when the data is read, not when it is built)."""
  workdir = tmp_path_factory.mktemp('kfold') / 'work'
  cmd = [sys.executable, '-m', 'fn2en_jax.main', '--config=tests/tiny_config.py', f'--workdir={workdir}',
         f'--config.data_dir={tiny_run[1]}', '--config.data.fold=-1', '--config.data.num_folds=2',
         "--config.stages=('scratch',)",
         *(f'--config.stage_scratch.{k}=4' for k in ('log_every', 'eval_every', 'checkpoint_every'))]
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return workdir


def test_evaluate_a_kfold_workdir_reports_every_fold_and_their_spread(tiny_kfold):
  workdir = tiny_kfold
  # The paper's numbers come from the config (config.paper, as configs/ck_plus.py sets them); the tiny config has
  # none, so give its k-fold report one.
  saved = json.loads((workdir / 'kfold.json').read_text())
  saved['config']['paper'] = {'scratch': 88.7}
  (workdir / 'kfold.json').write_text(json.dumps(saved))
  done = _evaluate_cli(workdir)
  assert done.returncode == 0, done.stderr[-3000:]
  folds = [_check_run_report(workdir / f'fold_{i}') for i in range(2)]
  report = json.loads((workdir / 'report.json').read_text())
  markdown = (workdir / 'report.md').read_text()
  row = 'Train from scratch (BN)'
  assert list(report['rows']) == list(saved['rows']) == [row]
  got = report['rows'][row]
  for metric in ('accuracy', 'mean_per_class_accuracy'):
    values = np.array([f['scratch'][metric] for f in folds])
    assert got[metric] == saved['rows'][row][metric] == values.tolist()  # what training measured, again
    assert got[f'{metric}_mean'] == pytest.approx(values.mean(), abs=1e-12)
    assert got[f'{metric}_std'] == pytest.approx(values.std(ddof=1), abs=1e-12)
  acc = np.array([f['scratch']['accuracy'] for f in folds])
  cells = ' | '.join(f'{100 * v:.2f}' for v in [*acc, acc.mean(), acc.std(ddof=1)])
  assert f'| {row} | {cells} | 88.70 |' in markdown
  assert got['paper_accuracy'] == pytest.approx(0.887)
  assert '[fold_0](fold_0/report.md)' in markdown and (workdir / 'fold_1' / 'report' / 'mistakes_scratch.png').exists()


def _float32(value: float) -> float:
  return float(np.float32(value))


def test_training_curves_are_what_the_loop_logged(tiny_run, tmp_path):
  workdir = tiny_run[0]
  trained = json.loads((workdir / 'results.json').read_text())['stages']
  for stage in ('face', 'b', 'scratch'):
    curves = evaluate.training_curves(str(workdir / stage))
    steps, accuracy = curves['validation/accuracy']
    assert steps == [2, 4]  # eval_every=2 of 4 steps (tests/tiny_config.py), on the validation subjects
    chosen = trained[stage]['selected_step']
    # The event files hold each number the loop logged as float32 (tf.summary.scalar casts, rounding to nearest):
    # exactly results.json's number rounded to float32.
    assert accuracy[steps.index(chosen)] == _float32(trained[stage]['validation']['accuracy'])
    # The test set appears once, at the end: the chosen checkpoint's number.
    assert curves['test/accuracy'][0] == [4]
    assert curves['test/accuracy'][1][0] == _float32(trained[stage]['accuracy'])
    assert curves['train/loss'][0] == [2, 4] and all(np.isfinite(curves['train/loss'][1]))
  curves_a = evaluate.training_curves(str(workdir / 'a'))
  assert curves_a['test/lp_loss'][1] == [_float32(trained['a']['lp_loss'])]
  # The chosen step has the least validation loss; rounding to float32 keeps the order (it is monotonic).
  assert min(curves_a['validation/lp_loss'][1]) == _float32(trained['a']['validation']['lp_loss'])
  assert evaluate.training_curves(str(tmp_path)) == {}


def test_evaluate_only_stages_of_the_run(tiny_run):
  with pytest.raises(errors.ConfigError, match=r"--stages: \['c'\] are not stages of the run"):
    evaluate.report(str(tiny_run[0]), stages=['b', 'c'])
  assert not (tiny_run[0] / 'report.json').exists()


def test_an_unfinished_kfold_run_is_a_kfold_run_to_every_command(tiny_kfold, tmp_path):
  """One rule (workdir.is_kfold) for evaluate, predict and visualize: a k-fold run whose last fold has not finished
  (no kfold.json yet) is still a k-fold run, and evaluate says which folds are done instead of treating the
  workdir as a single fold."""
  work = tmp_path / 'unfinished'
  shutil.copytree(tiny_kfold, work)
  for name in ('kfold.json', 'kfold.md', 'report.json', 'report.md'):  # the report of an earlier test, if any
    (work / name).unlink(missing_ok=True)
  shutil.rmtree(work / 'fold_1' / 'scratch')
  (work / 'fold_1' / 'results.json').unlink()
  assert workdir_lib.is_kfold(str(work)) and workdir_lib.folds(str(work)) == [0, 1]
  assert not workdir_lib.is_kfold(str(work / 'fold_0'))
  assert predictor_lib.resolve_workdir(str(work), None) == str(work / 'fold_0')
  assert visualize.run_dir(str(work), 0) == str(work / 'fold_0')
  with pytest.raises(errors.WorkdirError, match=r'k-fold run that has not finished: .* are \[0\]'):
    evaluate.report(str(work))
  assert not (work / 'report.json').exists()
