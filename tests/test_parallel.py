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


def _assert_close(history_a, history_b, rtol):
  for step, (a, b) in enumerate(zip(history_a, history_b)):
    for tree_a, tree_b in zip(a, b):
      jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-6, err_msg=f'step {step}'),
                   tree_a, tree_b)


def test_shard_map_step_equals_pmap_on_4_devices():
  assert jax.device_count() >= 4, 'tests/conftest.py asks for 4 fake CPU devices'
  state, batches, step = _setup(dropout=0.5)
  final, sharded = _run_shard_map(state, batches, step, jax.devices()[:4])
  pmapped = _run_pmap(state, batches, step, 4)
  _assert_close(sharded, pmapped, rtol=1e-5)
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
  _assert_close(four, one, rtol=2e-4)
