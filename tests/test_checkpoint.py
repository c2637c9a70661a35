"""How fn2en_jax's checkpoints write replicated arrays (fn2en_jax/train/checkpoint.py): small ones whole, by one
replica, with no JAX op per array and replica (Orbax's default on CPU slices each into one part per replica, an
eager op each); large ones still split over the replicas. Counted from JAX's own compile events."""

import collections

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec

from fn2en_jax.train import checkpoint

COMPILES = '/jax/core/compile/backend_compile_duration'
_events = collections.Counter()
jax.monitoring.register_event_duration_secs_listener(lambda name, *_, **__: _events.update([name]))


def _save_and_count(tree, directory):
  """Compiles during one save of `tree`, and the tree read back."""
  mngr = ocp.CheckpointManager(str(directory), options=ocp.CheckpointManagerOptions(create=True))
  before = _events[COMPILES]
  mngr.save(0, args=ocp.args.StandardSave(tree))
  mngr.wait_until_finished()
  compiles = _events[COMPILES] - before
  restored = mngr.restore(0, args=ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)))
  mngr.close()
  return compiles, restored


def test_small_replicated_arrays_are_saved_whole_and_large_ones_by_every_replica(tmp_path):
  assert len(jax.devices()) == 4  # tests/conftest.py
  replicated = NamedSharding(jax.make_mesh((4,), ('data',)), PartitionSpec())
  rng = np.random.default_rng(0)
  # 20 arrays of new shapes (so that no slicing program of them is compiled yet), each far below the threshold.
  small = {f'w{i}': jax.device_put(rng.normal(size=(8, 3 + i)).astype(np.float32), replicated) for i in range(20)}
  compiles, restored = _save_and_count(small, tmp_path / 'small')
  assert compiles == 0
  jax.tree.map(np.testing.assert_array_equal, restored, small)
  for leaf in jax.tree.leaves(restored):
    assert leaf.sharding.is_equivalent_to(replicated, leaf.ndim)
  # One array whose quarter reaches the threshold (rows a multiple of 4): each replica slices out its part.
  rows = 4 * -(-checkpoint.MIN_REPLICA_SLICE_BYTES // (4 * 257))
  large = {'w': jax.device_put(rng.normal(size=(rows, 257)).astype(np.float32), replicated)}
  assert large['w'].nbytes // 4 >= checkpoint.MIN_REPLICA_SLICE_BYTES
  compiles, restored = _save_and_count(large, tmp_path / 'large')
  assert compiles >= 1
  np.testing.assert_array_equal(restored['w'], large['w'])
