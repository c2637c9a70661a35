"""Orbax checkpoints: one manager per stage, exact resume, and read-only partial loads across stages."""

from __future__ import annotations

import logging as std_logging
import os
import re
from typing import Any, Sequence

import flax
import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

from fn2en_jax import errors
from fn2en_jax.train import parallel
from fn2en_jax.train.state import TrainState, abstract_variables

# A replicated array (the data-parallel TrainState is replicated over the mesh) is written by Orbax's default CPU
# handler "replica-parallel": each of the N replicas transfers and writes 1/N of it, and each such slice is an eager
# JAX op, dispatched (and, for every new shape, compiled) once per array per replica. For the many small arrays of
# a student that is most of a save's time (in a cProfile of a tiny run on 2 shared cores, 17 saves took 18.5 s, 14.4
# of it slicing; 0.85 s instead of 1.3 s per save of 200 small arrays on 4 CPU devices). Below this size a slice's write costs less than slicing
# it, so such arrays are written whole by one replica; large arrays (a VGG teacher's fc6) keep the parallel write
# that helps on a pod. Orbax on GPU turns replica-parallel off altogether.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _register_array_handler() -> None:
  default = ocp.type_handlers.get_type_handler(jax.Array)
  handler = ocp.type_handlers.ArrayHandler(
      min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES,
      # The store of array metadata (PRNG key types and the like) stays the default handler's; Orbax reads it from
      # the same attribute (array_metadata_store.resolve_array_metadata_store).
      array_metadata_store=getattr(default, '_array_metadata_store', None))
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  absl_logger.setLevel(std_logging.ERROR)  # not a warning at every start that the handler was replaced
  try:
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
  finally:
    absl_logger.setLevel(level)


_register_array_handler()


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


# The stage's best state by its validation set (train/loop.py), with its step and validation summary.
BEST = 'best'


def best_manager(stage_dir: str) -> ocp.CheckpointManager:
  """One checkpoint, `<stage_dir>/best/<step>/`: the 'state' and its 'selection' record (step, validation summary),
  saved together so that a kill can never pair a state with another step's record."""
  # Its own barrier names: on several hosts it saves the same step as the stage's manager, and Orbax's barriers
  # are named by step, so the two saves would otherwise wait on one barrier and abort.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=1, create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix='best'))
  return ocp.CheckpointManager(os.path.join(os.path.abspath(stage_dir), BEST), options=options,
                               item_names=('state', 'selection'))


def save_best(mngr: ocp.CheckpointManager, state: TrainState, record: dict) -> None:
  mngr.save(record['step'], args=ocp.args.Composite(
      state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)), selection=ocp.args.JsonSave(record)))


def best_record(stage_dir: str) -> dict | None:
  """{'step', 'summary'} of the stage's best checkpoint, or None if it has none."""
  directory = os.path.join(os.path.abspath(stage_dir), BEST)
  if not os.path.isdir(directory):
    return None
  mngr = ocp.CheckpointManager(directory, item_names=('state', 'selection'))
  step = mngr.latest_step()
  record = None if step is None else mngr.restore(
      step, args=ocp.args.Composite(selection=ocp.args.JsonRestore())).selection
  mngr.close()
  return record


def restore_best(mngr: ocp.CheckpointManager, state: TrainState, step: int) -> TrainState:
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(state))
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return flax.serialization.from_state_dict(state, restored.state)


def trained_state_path(stage_dir: str) -> str:
  """The 'state' item of the net a stage trained: its best checkpoint on the validation set when it kept one,
  else its newest. What the next stage reads, and what evaluate, predict, visualize and export use."""
  if best_record(stage_dir) is not None:
    return latest_state_path(os.path.join(stage_dir, BEST))
  return latest_state_path(stage_dir)


def trained_variables(model, image_size: int, stage_dir: str) -> dict:
  """The parameters and BatchNorm statistics of the net `stage_dir` trained (its chosen checkpoint; not its
  optimizer state), on this host's first device: the one restore of a trained net for inference (predict, export,
  visualize). `model` is the net the stage's `Role` names, built as it was trained."""
  target = abstract_variables(model, image_size, parallel.make_mesh(jax.local_devices()[:1]))
  target = {c: v for c, v in target.items() if c in ('params', 'batch_stats') and v}
  try:
    path = trained_state_path(stage_dir)
  except FileNotFoundError as e:
    raise errors.WorkdirError(f'{stage_dir}: no finished checkpoint', 'run that stage first, or pick another '
                              '--stage') from e
  return restore_subset(path, target)


def latest_state_path(stage_dir: str) -> str:
  """The 'state' item of the newest finished step of a stage directory."""
  mngr = ocp.CheckpointManager(os.path.abspath(stage_dir), item_names=('state', 'data'))
  step = mngr.latest_step()
  mngr.close()
  if step is None:
    raise FileNotFoundError(f'no finished checkpoint in {stage_dir}: run the stage that writes it first')
  return os.path.join(os.path.abspath(stage_dir), str(step), 'state')


def flat_keys(tree: Any) -> set[str]:
  return {checkpoint_key(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


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


def _stored_keys(path: str) -> set[str]:
  """The flat keys of every array in the PyTree checkpoint at `path`, read from its metadata (no array is read)."""
  with ocp.PyTreeCheckpointer() as checkpointer:
    meta = checkpointer.metadata(path)
  tree = getattr(meta, 'item_metadata', meta)
  return flat_keys(getattr(tree, 'tree', tree))


def _matching(keys, patterns: Sequence[str]) -> set[str]:
  return {k for k in keys if any(re.search(p, k) for p in patterns)}


def restore_into(path: str, fresh: Any, *, reinit: Sequence[str] = (), skip: Sequence[str] = (),
                 name: str = '') -> Any:
  """`fresh` (variables, arrays or ShapeDtypeStructs) with every leaf loaded from the checkpoint at `path`,
  except the leaves whose flat key ('params/head/fc1/kernel') matches a regex of `reinit`, which keep their fresh
  value. In the manner of big_vision's `merge_params`, and strict: a leaf to load that the checkpoint lacks, or a
  checkpoint array in the same collections that is neither loaded nor matched by `skip`, is an error, so that a
  trunk or a teacher is never partly random or silently incomplete. Logs what was kept and what was initialised.
  """
  fresh_flat = dict(jax.tree_util.tree_flatten_with_path(fresh)[0])
  keys = {checkpoint_key(p): p for p in fresh_flat}
  reinitialised = _matching(keys, reinit)
  load_keys = set(keys) - reinitialised
  collections = {k.split('/')[0] for k in keys}
  stored = {k for k in _stored_keys(path) if k.split('/')[0] in collections}
  missing = load_keys - stored
  unexplained = stored - load_keys - _matching(stored, skip)
  if missing or unexplained:
    raise ValueError(f'restoring {name or "variables"} from {path}: missing in the checkpoint '
                     f'{sorted(missing)[:8]}, in the checkpoint but neither loaded nor skipped '
                     f'{sorted(unexplained)[:8]}')
  subset = _unflatten_subset(fresh, {keys[k] for k in load_keys})
  loaded = dict(jax.tree_util.tree_flatten_with_path(restore_subset(path, subset))[0])
  merged = [loaded.get(p, leaf) for p, leaf in fresh_flat.items()]
  logging.info('%s: loaded %d arrays from %s; initialised %d afresh (%s)', name or 'restore', len(load_keys), path,
               len(reinitialised), ', '.join(sorted(reinitialised)[:6]) or 'none')
  return jax.tree.unflatten(jax.tree.structure(fresh), merged)


def checkpoint_key(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)


def _unflatten_subset(tree: dict, paths: set) -> dict:
  """The nested dict of `tree`'s leaves at `paths` only (dict trees: what Flax variables are)."""
  out: dict = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if path not in paths:
      continue
    node = out
    for k in path[:-1]:
      node = node.setdefault(k.key, {})
    node[path[-1].key] = leaf
  return out
