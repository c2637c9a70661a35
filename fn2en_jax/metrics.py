"""What a classifier's predictions score: the confusion matrix, accuracy, mean per-class accuracy and per-class
precision, recall and F1. Plain NumPy on labels and predictions, imported by the stages and the commands alike."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted]."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
  return counts


def classification_report(labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]) -> dict:
  """Accuracy over examples, and accuracy averaged over the classes present (robust to class imbalance)."""
  counts = confusion_matrix(labels, predictions, len(class_names))
  per_class_total = counts.sum(axis=1)
  present = per_class_total > 0
  per_class = np.diag(counts)[present] / per_class_total[present]
  return {'accuracy': float(np.trace(counts) / max(counts.sum(), 1)),
          'mean_per_class_accuracy': float(per_class.mean()) if present.any() else 0.0,
          'num_examples': int(counts.sum()),
          'class_names': list(class_names),
          'confusion_matrix': counts.tolist()}


def per_class_scores(counts: np.ndarray, class_names: Sequence[str]) -> dict[str, dict]:
  """Precision, recall (the class's accuracy) and F1 per class from counts[true, predicted]. A class never
  predicted has precision 0, one never present recall 0 (and its support, 0, says why)."""
  counts = np.asarray(counts, np.float64)
  tp, predicted, support = np.diag(counts), counts.sum(axis=0), counts.sum(axis=1)
  precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
  recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
  f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
  return {name: {'precision': float(precision[i]), 'recall': float(recall[i]), 'f1': float(f1[i]),
                 'support': int(support[i])} for i, name in enumerate(class_names)}
