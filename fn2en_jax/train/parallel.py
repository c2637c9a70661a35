"""Data parallelism in the pmap model, written as jit(shard_map) over a 1-D mesh with the axis 'batch'.

Parameters stay global, replicated `jax.Array`s (what Orbax saves on multi-host pods); each device sees its slice of
the batch and the step itself averages gradients, BatchNorm statistics and metrics with `lax.pmean(.., 'batch')`.
`check_vma=False` keeps the pmap semantics: with the check on, JAX would already sum the gradients of replicated
parameters and the explicit pmean would scale the update wrongly.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'batch'


def make_mesh(devices=None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def data_parallel_step(step: Callable, mesh: Mesh) -> Callable:
  """`step(state, batch, aux) -> (state, metrics)` run on every replica; state donated, metrics replicated."""
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()), check_vma=False)
  return jax.jit(sharded, donate_argnums=0)


def data_parallel_eval(step: Callable, mesh: Mesh) -> Callable:
  """`step(state, batch, aux) -> per-example outputs`, gathered back along the batch."""
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=P(AXIS), check_vma=False)
  return jax.jit(sharded)


def replicated(mesh: Mesh) -> NamedSharding:
  """A whole copy on every device of the mesh: how parameters and the teacher are laid out."""
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  """Places a pytree that every process holds whole (the same values everywhere: initialised from the same seed)
  on every device of the mesh. On several hosts `device_put` cannot reach the other hosts' devices, so each
  process gives its own copy for its own devices."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Host-local numpy batch -> global arrays split over 'batch' (each host contributes its own rows)."""
  sharding = NamedSharding(mesh, P(AXIS))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def to_host(tree):
  """Global arrays -> numpy, gathering the rows every host holds."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)
