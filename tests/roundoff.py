"""Tolerances for the tests that compare two float32 computations of the same function which differ only in how
they round: in the order of their sums (another batch size or padding, another program or fusion, XLA against
NumPy, TensorFlow's XLA or TFLite's kernels against JAX's) and in their implementations of exp, log and rsqrt.
Such results change with the machine (AVX2 and AVX-512 kernels block their sums differently); a tolerance derived
from what is computed holds on all of them. A program compared with itself on the same inputs needs none: those
comparisons are exact.

`bound(fn, *args)` runs a running error analysis (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
3.3) over `fn`'s jaxpr. Next to every tensor x it carries A(x), a bound on max |computed - exact| over x's
elements; S(x) = max |x| is its scale and u = 2**-24 float32's unit roundoff. The rules:

  - a sum of n terms, and a dot product or convolution of n products per output element, computed in any order
    (with or without fused multiply-adds), is within gamma(n) = n u / (1 - n u) times the sum of the terms'
    magnitudes of the exact value (Higham 3.1, 4.2): gamma(n + 1) max(|a| . |b|), the same contraction of the
    magnitudes (n + 1: a runtime may add the bias inside the sum, as TFLite's fully connected layer does, so an
    add right after a contraction also gets gamma(n + 1) times the scale of its other operand);
  - +, -, x round once, u S(result), on top of the inputs' errors carried through (A_a + A_b;
    S(a) A_b + A_a S(b) + A_a A_b); / twice (a compiler may multiply by the rounded reciprocal of a constant);
  - exp, log and rsqrt are within ELEMENTARY_ULPS = 4 ulps of their exact value (an ulp is at most 2 u times the
    value), twice the most measured for JAX's float32 exp on CPU over 2 million points (2 ulps:
    github.com/pearu/functional_algorithms/issues/44), plus the input's error through the function;
  - max and min (ReLU, max pooling) do not round: |max(a', b') - max(a, b)| <= max(|a' - a|, |b' - b|);
  - a reduce_sum of n elements carries n A; reshapes, slices and broadcasts carry A; integers and booleans
    (casts, comparisons of exact values) are exact.

These are worst cases but for one rule, the assumption without which a bound on a deep net is of no use: an error
that enters a dot product or convolution grows by that contraction's gain on its signal, S(output) / S(input), so
that relative errors add along the chain where no sum cancels at the scale of its tensor (the reasoning of
tests/test_parallel.py and tests/test_distributed.py). The worst case would multiply it by the largest sum of
|weights| of an output instead, as if every rounding error had the sign of the weight it meets: on the nets of
these tests that is 6 to 8 times the signal's gain per layer, some 10**5 over a net, and rounding errors, of
either sign, do not line up so. On the nets of these tests the bound is 200 to 10**4 times the error against a
float64 computation; the first-order worst case, every rounding error at once of the sign that hurts most (from the
exact sensitivities of an output to each rounding), is from half the bound to 7 times it.

The analysis is first order (computed values stand in for the exact ones, which changes A by a relative
O(A / S)), and it computes in float32 (each contraction of magnitudes within n u); SLACK = 1.02 on the result
covers both while A stays below S / 100, which `bound` checks. Two computations within A of the exact value are
within 2 A of each other. A primitive without a rule raises: nothing is bounded by rules not written for it.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import extend as jex

U = 2.0 ** -24  # float32's unit roundoff
ELEMENTARY_ULPS = 4
SLACK = 1.02


def gamma(n):
  """Higham's gamma_n: a sum of n + 1 terms, or a dot product of n products, in any order is within gamma(n) times
  the sum of their magnitudes of the exact value."""
  return n * U / (1 - n * U)


def assert_within(actual, desired, bound, err_msg=''):
  """|actual - desired| <= bound, element by element (`bound` broadcasts)."""
  actual, desired, bound = (np.asarray(a, np.float64) for a in (actual, desired, bound))
  excess = np.abs(actual - desired) - bound
  assert np.all(excess <= 0), f'{err_msg} {np.sum(excess > 0)} of {excess.size} elements beyond the bound, by up ' \
                              f'to {np.max(excess):.3g} (bound up to {np.max(bound):.3g})'


# --- The running error analysis ------------------------------------------------------------------------------------

_ELEMENTARY = ELEMENTARY_ULPS * 2 * U  # relative error of exp, log and rsqrt
_CARRY = {'reshape', 'broadcast_in_dim', 'slice', 'dynamic_slice', 'transpose', 'squeeze', 'expand_dims',
          'concatenate', 'pad', 'rev', 'copy', 'copy_p', 'stop_gradient', 'neg', 'abs', 'reduce_max', 'reduce_min',
          'max', 'min', 'reduce_window_max'}
_CALLS = {'jit': 'jaxpr', 'pjit': 'jaxpr', 'closed_call': 'call_jaxpr', 'custom_jvp_call': 'call_jaxpr',
          'custom_vjp_call': 'call_jaxpr', 'custom_vjp_call_jaxpr': 'fun_jaxpr'}
_CONTRACTIONS = ('dot_general', 'conv_general_dilated')


def _scale(x):
  return jnp.max(jnp.abs(x)).astype(jnp.float32) if x.size else jnp.float32(0)


def _literal(var):
  return isinstance(var, jex.core.Literal)


def _contraction_length(eqn):
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  if eqn.primitive.name == 'dot_general':
    (lhs_contract, _), _ = eqn.params['dimension_numbers']
    return math.prod(lhs[d] for d in lhs_contract)
  spec = eqn.params['dimension_numbers'].rhs_spec  # (output features, input features, spatial...)
  return rhs[spec[1]] * math.prod(rhs[d] for d in spec[2:])


class _Analysis:

  def __init__(self):
    self.checks = []  # (what must hold, a traced boolean)
    self.contracted = {}  # variable -> n, for the outputs of contractions of n products

  def rule(self, eqn, values, errors, out):
    """A of the equation's one output, from its inputs' values and A."""
    name = eqn.primitive.name
    if not jnp.issubdtype(out.dtype, jnp.floating):  # integers, booleans: exact if their inputs are
      self.checks.append((f'{name} of an inexact value', sum(errors, jnp.float32(0)) == 0))
      return jnp.float32(0)
    s = _scale(out)
    if name == 'convert_element_type':
      (x,), (a,) = values, errors
      if not jnp.issubdtype(x.dtype, jnp.floating):
        self.checks.append(('an integer that float32 does not hold exactly', _scale(x) < 2 ** 24))
        return jnp.float32(0)
      assert x.dtype == out.dtype == jnp.float32, f'a cast {x.dtype} -> {out.dtype}: no rule for it'
      return a
    if name in _CARRY:
      return jnp.max(jnp.stack([jnp.float32(0), *errors]))
    if name in ('add', 'sub'):
      extra = sum((gamma(self.contracted[v] + 1) * _scale(values[1 - i]) for i, v in enumerate(eqn.invars)
                   if not _literal(v) and v in self.contracted), jnp.float32(0))
      return errors[0] + errors[1] + U * s + extra
    if name == 'mul':
      (x, y), (a, b) = values, errors
      return _scale(x) * b + a * _scale(y) + a * b + U * s
    if name == 'div':
      (_, y), (a, b) = values, errors
      smallest = jnp.min(jnp.abs(y))
      self.checks.append(('a divisor within its error of 0', smallest > b))
      return (a + s * b) / (smallest - b) + 2 * U * s
    if name in ('square', 'integer_pow'):
      assert name == 'square' or eqn.params['y'] == 2, f'{name} {eqn.params}: no rule for it'
      (x,), (a,) = values, errors
      return 2 * _scale(x) * a + a * a + U * s
    if name == 'exp':  # exp(x') / exp(x) = exp(x' - x)
      return s * ((1 + _ELEMENTARY) * jnp.expm1(errors[0]) + _ELEMENTARY)
    if name == 'log':  # |log x' - log x| <= |x' - x| / min(x, x')
      (x,), (a,) = values, errors
      smallest = jnp.min(x)
      self.checks.append(('log of a value within its error of 0', smallest > a))
      return a / (smallest - a) + _ELEMENTARY * s
    if name == 'rsqrt':  # |d rsqrt(x)| = rsqrt(x) |dx| / (2 x)
      (x,), (a,) = values, errors
      smallest = jnp.min(x)
      self.checks.append(('rsqrt of a value within its error of 0', smallest > a))
      return s * (0.5 * a / (smallest - a) + _ELEMENTARY)
    if name == 'reduce_sum':
      (x,), (a,) = values, errors
      n = math.prod(x.shape[d] for d in eqn.params['axes'])
      return n * a + gamma(max(n - 1, 0)) * _scale(eqn.primitive.bind(jnp.abs(x), **eqn.params))
    if name in _CONTRACTIONS:
      (x, y), (a, b) = values, errors
      n = _contraction_length(eqn)
      magnitudes = eqn.primitive.bind(jnp.abs(x), jnp.abs(y), **eqn.params)
      # The assumption (the module's docstring): an input's error grows by the contraction's gain on its signal.
      # (An empty input holds no value: dlib's last stage at 80 px convolves a 0x0 map.)
      self.checks.append(('an error on an input of a contraction that is all 0',
                          ((_scale(x) > 0) | (a == 0) | (x.size == 0)) & ((_scale(y) > 0) | (b == 0) | (y.size == 0))))
      gain = lambda v: s / jnp.maximum(_scale(v), jnp.finfo(jnp.float32).tiny)
      return gamma(n + 1) * _scale(magnitudes) + a * gain(x) + b * gain(y) + n * a * b
    raise NotImplementedError(f'no roundoff rule for the primitive {name!r}')

  def eval(self, jaxpr, consts, values, errors):
    env = {}
    read = lambda v: (jnp.asarray(v.val), jnp.float32(0)) if _literal(v) else env[v]
    for var, value in zip(jaxpr.constvars, consts):
      env[var] = jnp.asarray(value), jnp.float32(0)
    for var, value, error in zip(jaxpr.invars, values, errors):
      env[var] = value, error
    for eqn in jaxpr.eqns:
      ins = [read(v) for v in eqn.invars]
      vals, errs = [v for v, _ in ins], [e for _, e in ins]
      name = eqn.primitive.name
      if name in _CALLS:
        closed = eqn.params[_CALLS[name]]
        outs = self.eval(closed.jaxpr, closed.consts, vals, errs)
        for inner, var in zip(closed.jaxpr.outvars, eqn.outvars):  # a contraction's output, through a call
          if not _literal(inner) and inner in self.contracted:
            self.contracted[var] = self.contracted[inner]
      else:
        assert len(eqn.outvars) == 1, f'{name}: more than one output, no rule for it'
        out = eqn.primitive.bind(*vals, **eqn.params)
        outs = [(out, self.rule(eqn, vals, errs, out))]
        if name in _CONTRACTIONS:
          self.contracted[eqn.outvars[0]] = _contraction_length(eqn)
      for var, pair in zip(eqn.outvars, outs):
        env[var] = pair
    return [read(v) for v in jaxpr.outvars]


def bound(fn, *args):
  """(fn(*args), A): the float32 value, and for each of its arrays the bound A (a float) on how far any float32
  computation of `fn` that differs from this one in the order of its sums and in its exp, log and rsqrt is from the
  exact value, in any element. `args` are the inputs both computations receive, taken as exact. Two such
  computations are within 2 A of each other."""
  closed = jax.make_jaxpr(fn)(*args)
  _, tree = jax.tree.flatten(jax.eval_shape(fn, *args))
  messages = []

  @jax.jit
  def analyse(leaves):
    analysis = _Analysis()
    outs = analysis.eval(closed.jaxpr, closed.consts, leaves, [jnp.float32(0)] * len(leaves))
    messages.extend(m for m, _ in analysis.checks)
    return outs, [c for _, c in analysis.checks]

  outs, checks = analyse([jnp.asarray(x) for x in jax.tree.leaves(args)])
  failed = [m for m, ok in zip(messages, checks) if not ok]
  assert not failed, f'the analysis does not apply: {failed}'
  values = [np.asarray(v) for v, _ in outs]
  errors = [SLACK * float(a) for _, a in outs]
  for value, error in zip(values, errors):
    assert error <= 1e-2 * float(np.max(np.abs(value), initial=0)), \
        f'a bound of {error:.3g} on values up to {np.max(np.abs(value)):.3g}: too large for a first-order analysis'
  return jax.tree.unflatten(tree, values), jax.tree.unflatten(tree, errors)
