"""Subject-independent k-fold splits and the official folds of TFD.

The paper reports person-independent accuracy: no subject may appear in both the training and the test part
of a fold, so folds are drawn over subjects, never over examples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fn2en_jax import errors

# TFD's `folds` column codes (TFD_*.mat, one column per official fold).
TFD_UNUSED, TFD_TRAIN, TFD_VALID, TFD_TEST = 0, 1, 2, 3
TFD_NUM_FOLDS = 5


def subject_folds(subjects: Sequence[str], k: int) -> list[list[str]]:
  """Deals the unique subjects, sorted, into k folds: fold i is subjects[i::k].

  Sorting first makes the folds a function of the subject set alone, whatever the example order.
  """
  unique = sorted(set(subjects))
  if not 2 <= k <= len(unique):
    raise ValueError(f'k={k} folds need 2 <= k <= number of subjects ({len(unique)}).')
  return [unique[i::k] for i in range(k)]


def fold_split(example_subjects: Sequence[str], fold: int, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (train, test) indices into `example_subjects` for fold `fold` of k; test = that fold's subjects."""
  if not 0 <= fold < k:
    raise ValueError(f'fold={fold} must be in [0, {k}).')
  test_subjects = set(subject_folds(example_subjects, k)[fold])
  is_test = np.array([s in test_subjects for s in example_subjects], dtype=bool)
  return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def leave_one_subject_out(example_subjects: Sequence[str], fold: int, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (train, test) indices: test = every example of the `fold`-th subject (sorted); k = number of subjects.

  For sets with few subjects, where k subject folds would leave too few subjects to train on. k must equal the
  number of subjects (a config states it; a mismatch would silently skip or repeat subjects)."""
  unique = sorted(set(example_subjects))
  if k != len(unique):
    raise errors.ConfigError(
        f"data.num_folds={k}, but protocol 'leave_one_subject_out' needs one fold per subject: {len(unique)} here",
        f'set --config.data.num_folds={len(unique)}')
  if not 0 <= fold < k:
    raise ValueError(f'fold={fold} must be in [0, {k}).')
  is_test = np.asarray(example_subjects) == unique[fold]
  return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def tfd_fold_split(fold_codes: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns (train, valid, test) indices of TFD's official fold `fold` from the (N, 5) `folds` codes."""
  fold_codes = np.asarray(fold_codes)
  if fold_codes.ndim != 2 or fold_codes.shape[1] != TFD_NUM_FOLDS:
    raise ValueError(f'TFD fold codes must have shape (N, {TFD_NUM_FOLDS}), got {fold_codes.shape}.')
  if not 0 <= fold < TFD_NUM_FOLDS:
    raise ValueError(f'fold={fold} must be in [0, {TFD_NUM_FOLDS}).')
  column = fold_codes[:, fold]
  return tuple(np.flatnonzero(column == code) for code in (TFD_TRAIN, TFD_VALID, TFD_TEST))
