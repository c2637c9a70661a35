"""Orbax checkpoints: one manager per stage, exact resume, and read-only partial loads across stages."""

from __future__ import annotations

import os
from typing import Any

import flax
import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

from fn2en_jax.train.state import TrainState


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """The stage's manager: items 'state' (the TrainState's arrays) and 'data' (the grain iterator position)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=('state', 'data'))


def save(mngr: ocp.CheckpointManager, state: TrainState, data_iterator) -> None:
  step = int(jax.device_get(state.step))
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
                                          data=grain.checkpoint.CheckpointSave(data_iterator)))


def restore(mngr: ocp.CheckpointManager, state: TrainState, data_iterator, step: int) -> TrainState:
  """Restores `step` into `state`'s structure and shardings, and moves `data_iterator` to where it was."""
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(state))
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                        data=grain.checkpoint.CheckpointRestore(data_iterator)))
  return flax.serialization.from_state_dict(state, restored.state)


def latest_state_path(stage_dir: str) -> str:
  """The 'state' item of the newest finished step of a stage directory."""
  mngr = ocp.CheckpointManager(os.path.abspath(stage_dir), item_names=('state', 'data'))
  step = mngr.latest_step()
  mngr.close()
  if step is None:
    raise FileNotFoundError(f'no finished checkpoint in {stage_dir}: run the stage that writes it first')
  return os.path.join(os.path.abspath(stage_dir), str(step), 'state')


def flat_keys(tree: Any) -> set[str]:
  return {'/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def restore_subset(path: str, subset: Any) -> Any:
  """Reads only the leaves of `subset` (a tree of arrays giving shapes, dtypes and shardings) from the PyTree
  checkpoint at `path`, and checks that exactly those leaves came back.

  Orbax's partial restore silently leaves out what it does not find; a teacher or a trunk that is partly random
  would train without complaint, so a missing or extra key is an error here.
  """
  if not os.path.isdir(path):
    raise FileNotFoundError(f'checkpoint {path} does not exist')
  with ocp.PyTreeCheckpointer() as checkpointer:
    restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
        item=subset, restore_args=ocp.checkpoint_utils.construct_restore_args(subset), partial_restore=True))
  expected, got = flat_keys(subset), flat_keys(restored)
  if expected != got:
    raise ValueError(f'partial restore from {path}: missing {sorted(expected - got)}, '
                     f'unexpected {sorted(got - expected)}')
  for (p, want), have in zip(jax.tree_util.tree_flatten_with_path(subset)[0], jax.tree.leaves(restored)):
    if want.shape != have.shape:
      raise ValueError(f'partial restore from {path}: {jax.tree_util.keystr(p)} has shape {have.shape}, '
                       f'expected {want.shape}')
  logging.info('Restored %d arrays from %s', len(expected), path)
  return restored
