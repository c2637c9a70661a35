import numpy as np
import pytest

from fn2en_jax import evaluate


def test_classification_report_by_hand():
  names = ('neutral', 'anger', 'happy', 'sadness')
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
  preds = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  report = evaluate.classification_report(labels, preds, names)
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
  table = evaluate.write_results(str(tmp_path), summaries, {'seed': 0}, 'the test split')
  rows = table.splitlines()[2:]
  assert rows == ['| Train from scratch (BN) | 50.00 | 25.00 |', '| Face net fine-tune (baseline) | 70.00 | 35.00 |',
                  '| FN2EN | 90.00 | 45.00 |']
  assert (tmp_path / 'results.md').read_text().startswith(table)
  assert '- a: 2.0 s' in (tmp_path / 'results.md').read_text()
  for stage in ('scratch', 'face', 'b'):
    assert (tmp_path / f'confusion_{stage}.png').stat().st_size > 1000
  assert not (tmp_path / 'confusion_a.png').exists()
