import numpy as np
import pytest
import roundoff

from fn2en_jax import losses

# The losses are computed in float32 and compared with NumPy's float64 computation of the same numbers: the float32
# result is within the bound of tests/roundoff.py (its sums and roundings, from the inputs' magnitudes) of the exact
# value; the float64 one within 100 x 2**-53 of it (sums of at most 80 terms of one sign, a log of at most 4 terms).
FLOAT64 = 100 * 2.0 ** -53


@pytest.mark.parametrize('p', [1, 2])
@pytest.mark.parametrize('reduction', ['sum', 'mean'])
def test_lp_regression_matches_numpy(p, reduction):
  rng = np.random.default_rng(0)
  student = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
  teacher = np.maximum(rng.normal(size=(3, 4, 4, 5)), 0).astype(np.float32)
  per_example = [np.sum(np.abs(s - t) ** p) for s, t in zip(student.astype(np.float64), teacher)]
  if reduction == 'mean':
    per_example = [v / (4 * 4 * 5) for v in per_example]
  got, bound = roundoff.bound(lambda s, t: losses.lp_regression(s, t, p=p, reduction=reduction), student, teacher)
  expected = np.mean(per_example)
  roundoff.assert_within(got, expected, bound + FLOAT64 * expected)
  assert bound < 200 * roundoff.U * expected  # a sum of terms of one sign: no cancellation, a few hundred u at most


def test_lp_regression_zero_at_the_teacher_and_bfloat16_safe():
  teacher = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype(np.float32)
  assert float(losses.lp_regression(teacher, teacher)) == 0.0
  import jax.numpy as jnp
  value = losses.lp_regression(jnp.asarray(teacher, jnp.bfloat16), jnp.zeros_like(teacher), p=2)
  assert value.dtype == jnp.float32


def test_lp_regression_rejects_bad_arguments():
  x = np.zeros((2, 3, 3, 4), np.float32)
  with pytest.raises(ValueError, match='p must be 1 or 2'):
    losses.lp_regression(x, x, p=3)
  with pytest.raises(ValueError, match='reduction'):
    losses.lp_regression(x, x, reduction='max')
  with pytest.raises(ValueError, match='student map'):
    losses.lp_regression(x, x[:, :2])


def test_cross_entropy_matches_numpy_with_label_smoothing():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(5, 4)).astype(np.float32)
  labels = np.array([0, 3, 1, 1, 2])
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  for smoothing in (0.0, 0.1):
    targets = np.full((5, 4), smoothing / 4)
    targets[np.arange(5), labels] += 1 - smoothing
    expected = -(targets * log_probs).sum(-1).mean()
    got, bound = roundoff.bound(lambda x, y: losses.cross_entropy(x, y, smoothing), logits, labels)
    roundoff.assert_within(got, expected, bound + FLOAT64 * abs(expected))
    assert bound < 200 * roundoff.U * abs(expected)
