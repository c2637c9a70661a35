"""Subject-independent folds: exact assignment, disjointness, TFD's official folds."""

import numpy as np
import pytest

from fn2en_jax.data import folds


def test_subject_folds_deals_sorted_subjects():
  subjects = ['S3', 'S1', 'S5', 'S2', 'S1', 'S4', 'S3']
  assert folds.subject_folds(subjects, 2) == [['S1', 'S3', 'S5'], ['S2', 'S4']]
  assert folds.subject_folds(subjects, 5) == [['S1'], ['S2'], ['S3'], ['S4'], ['S5']]


@pytest.mark.parametrize('k', [1, 0, 6])
def test_subject_folds_rejects_bad_k(k):
  with pytest.raises(ValueError, match='number of subjects \\(5\\)'):
    folds.subject_folds(['S1', 'S2', 'S3', 'S4', 'S5'], k)


def test_fold_split_exact_indices():
  subjects = ['b', 'a', 'c', 'a', 'b', 'd']
  # Sorted subjects a, b, c, d; with k=2, fold 0 = {a, c}, fold 1 = {b, d}.
  train, test = folds.fold_split(subjects, 0, 2)
  np.testing.assert_array_equal(test, [1, 2, 3])
  np.testing.assert_array_equal(train, [0, 4, 5])
  train, test = folds.fold_split(subjects, 1, 2)
  np.testing.assert_array_equal(test, [0, 4, 5])
  np.testing.assert_array_equal(train, [1, 2, 3])


def test_no_subject_in_two_folds_and_every_example_tested_once():
  rng = np.random.default_rng(0)
  subjects = [f'S{i:03d}' for i in rng.integers(0, 37, size=500)]
  k = 10
  seen_test = np.zeros(len(subjects), dtype=int)
  for fold in range(k):
    train, test = folds.fold_split(subjects, fold, k)
    assert not {subjects[i] for i in train} & {subjects[i] for i in test}
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(subjects)))
    seen_test[test] += 1
  np.testing.assert_array_equal(seen_test, 1)
  fold_sets = [set(f) for f in folds.subject_folds(subjects, k)]
  assert sum(len(f) for f in fold_sets) == len(set().union(*fold_sets)) == len(set(subjects))


@pytest.mark.parametrize('fold', [-1, 3])
def test_fold_split_rejects_bad_fold(fold):
  with pytest.raises(ValueError, match='fold='):
    folds.fold_split(['a', 'b', 'c'], fold, 3)


def test_tfd_fold_split():
  codes = np.array([[1, 2, 3, 1, 0],
                    [3, 1, 2, 1, 0],
                    [2, 3, 1, 0, 1]])
  train, valid, test = folds.tfd_fold_split(codes, 0)
  np.testing.assert_array_equal(train, [0])
  np.testing.assert_array_equal(valid, [2])
  np.testing.assert_array_equal(test, [1])
  train, valid, test = folds.tfd_fold_split(codes, 3)
  np.testing.assert_array_equal(train, [0, 1])
  assert valid.size == test.size == 0
  with pytest.raises(ValueError, match='shape'):
    folds.tfd_fold_split(codes[:, :4], 0)
  with pytest.raises(ValueError, match='fold=5'):
    folds.tfd_fold_split(codes, 5)
