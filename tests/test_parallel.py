"""The jit(shard_map) data-parallel step against jax.pmap of the same function, and against one device."""

import functools

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from fn2en_jax import defaults
from fn2en_jax.models import expnet
from fn2en_jax.stages import classification
from fn2en_jax.train import parallel, state as train_state


def _setup(dropout):
  config = ml_collections.ConfigDict({'student': dict(widths=(4, 8, 8, 8, 8), fc_dim=16, dropout=dropout),
                                      'dtype': 'float32'})
  model = expnet.from_config(config, num_classes=5, axis_name=parallel.AXIS)
  hp = defaults.stage_config(optimizer='sgd', learning_rate=0.1, momentum=0.9, weight_decay=1e-3, num_steps=3)
  rng = jax.random.key(0)
  state = train_state.create_state(model, train_state.init_variables(model, rng, 32), hp, rng)
  state = jax.device_get(state)  # host copies: each run below donates its own device buffers
  data = np.random.default_rng(0)
  batches = [{'image': data.normal(size=(16, 32, 32, 3)).astype(np.float32),
              'label': data.integers(0, 5, size=16).astype(np.int32)} for _ in range(3)]
  step = functools.partial(classification.train_step, label_smoothing=0.1)
  return state, batches, step


def _run_shard_map(state, batches, step, devices):
  mesh = parallel.make_mesh(devices)
  state = parallel.replicate(state, mesh)
  fn = parallel.data_parallel_step(step, mesh)
  history = []
  for batch in batches:
    state, metrics = fn(state, parallel.shard_batch(batch, mesh), None)
    history.append((jax.device_get(state.params), jax.device_get(state.batch_stats), jax.device_get(metrics)))
  return state, history


def _run_pmap(state, batches, step, n):
  fn = jax.pmap(step, axis_name=parallel.AXIS, in_axes=(0, 0, None))
  # pmap's own layout: a leading axis of one copy per device.
  state = jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), state)
  history = []
  for batch in batches:
    local = jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), batch)
    state, metrics = fn(state, local, None)
    first = lambda tree: jax.device_get(jax.tree.map(lambda x: x[0], tree))
    history.append((first(state.params), first(state.batch_stats), first(metrics)))
  return history


# Two runs of these steps that differ only in the order in which float32 sums add up (shard_map against pmap:
# another lowering of the same per-device step; 4 replicas against 1 device: partial sums of 4 examples meeting in
# the all-reduce, against sums over 16) differ by at most this. With u the unit roundoff (2**-24), a sum of n
# terms computed in any order is within (n - 1) u x the sum of the terms' magnitudes of the exact one (Higham,
# Accuracy and Stability of Numerical Algorithms, 4.2). One step depends on a chain of such sums; with B examples
# on a device: the convolutions, 9 C_in terms each forward (279 over the five blocks) and 9 C_out backward (324),
# BatchNorm's sums over the device's B x (32^2 + 16^2 + 8^2 + 4^2 + 2^2) pixels forward and backward, the first
# kernel gradient's sum over B x 32^2 positions, the head and the loss (under 100), the mean over the devices:
# n(B) = 603 + 100 + 2 x 1364 B + 1024 B, 16,000 for B = 4 and 61,000 for B = 16. Where no sum cancels at the
# scale of its tensor, relative errors add along the chain, so what a step adds to a tensor is off by at most
# (n_a + n_b) u times its size in the two runs. Each step also rounds every parameter and statistic to float32
# (an ulp, 2 u |x|, at most). After t steps:
#     |a - b| <= u (2 t max|x| + (n_a + n_b) sum over the steps s <= t of max|x_s - x_(s-1)|),
# with x_s the tensor after step s (x_0 the initial state). A BatchNorm running statistic adds a tenth of a batch
# statistic per step, which can be as large as the running statistic itself (its first step from 0), so its
# per-step size is taken as max|x_s|. The loss is a chain of the forward pass's sums on parameters t - 1 steps apart,
# so it is compared as one more tensor, with |loss| as each step's size. The accuracy counts arg maxes, a discrete
# quantity: an example's prediction flips only if its two largest logits are within rounding of each other, so
# one example (1/16) per step may differ.
# These are worst cases. What the tests guard against, a missing mean or a gradient summed instead of averaged,
# changes an update by its own size; the tolerance stays under a tenth of it (checked).
U = 2.0 ** -24


def _chain(per_device_batch):
  return 603 + 100 + (2 * 1364 + 1024) * per_device_batch


def _assert_close(history_a, history_b, initial, chain):
  """history_*: per step (params, batch_stats, metrics); initial: (params, batch_stats) before the first step."""
  moved = None  # per tensor, the sum so far of what each step added
  previous = jax.tree.map(np.asarray, (*initial, None))
  for t, (a, b) in enumerate(zip(history_a, history_b), start=1):
    b = jax.tree.map(np.asarray, b)
    assert set(a[2]) == set(b[2]) == {'loss', 'accuracy'}, (a[2], b[2])  # every metric is compared below
    size = (jax.tree.map(lambda x, y: np.max(np.abs(x - y)), b[0], previous[0]),  # parameters: the update
            jax.tree.map(lambda x: np.max(np.abs(x)), b[1]),  # running statistics: up to their own size
            {'loss': np.abs(b[2]['loss'])})
    moved = size if moved is None else jax.tree.map(np.add, moved, size)
    for part, (tree_a, tree_b) in enumerate(zip(a[:2], b[:2])):
      jax.tree.map(lambda x, y, m: np.testing.assert_allclose(
          x, y, rtol=0, atol=U * (2 * t * np.max(np.abs(y)) + chain * m), err_msg=f'step {t}'),
          tree_a, tree_b, moved[part])
    np.testing.assert_allclose(a[2]['loss'], b[2]['loss'], rtol=0, atol=U * chain * moved[2]['loss'],
                               err_msg=f'step {t}')
    np.testing.assert_allclose(a[2]['accuracy'], b[2]['accuracy'], rtol=0, atol=1 / 16, err_msg=f'step {t}')
    previous = b
  # The bound stays under a tenth of what the steps moved each kernel: a wrong update does not fit in it.
  for (path, y), m in zip(jax.tree_util.tree_flatten_with_path(previous[0])[0], jax.tree.leaves(moved[0])):
    if y.ndim > 1:
      assert U * (2 * t * np.max(np.abs(y)) + chain * m) < m / 10, (jax.tree_util.keystr(path), m)


def test_shard_map_step_equals_pmap_on_4_devices():
  assert jax.device_count() >= 4, 'tests/conftest.py asks for 4 fake CPU devices'
  state, batches, step = _setup(dropout=0.5)
  final, sharded = _run_shard_map(state, batches, step, jax.devices()[:4])
  pmapped = _run_pmap(state, batches, step, 4)
  _assert_close(sharded, pmapped, (state.params, state.batch_stats), chain=2 * _chain(4))
  # The parameters really are global replicated arrays (what Orbax saves), not per-device stacks.
  leaf = jax.tree.leaves(final.params)[0]
  assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.is_fully_replicated
  assert int(final.step) == 3
  # And the updates moved the parameters (the comparison is not between two frozen states).
  assert not np.allclose(sharded[0][0]['head']['fc2']['kernel'], sharded[2][0]['head']['fc2']['kernel'])


def test_four_replicas_equal_one_device_on_the_whole_batch():
  # Without dropout, pmean of gradients and of BatchNorm statistics makes 4 replicas x 4 examples the same
  # computation as 1 device x 16 examples; a missing or doubled pmean breaks this.
  state, batches, step = _setup(dropout=0.0)
  _, four = _run_shard_map(state, batches, step, jax.devices()[:4])
  _, one = _run_shard_map(state, batches, step, jax.devices()[:1])
  _assert_close(four, one, (state.params, state.batch_stats), chain=_chain(4) + _chain(16))
