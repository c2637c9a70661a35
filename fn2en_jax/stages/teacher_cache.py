"""Stage a's teacher maps computed once per augmentation view and stored (`config.stage_a.cache_teacher=True`).

The teacher is frozen in stage a, so its map of a given image never changes. With `stage_a.views` = K fixed
augmentation views per training image (`data.pipeline.view_rng`: each visit of an image draws one of its K views),
the K maps of every image are computed once, before the first step, and the steps read them from disk instead of
running the teacher. At the paper's shapes the teacher's forward pass is most of a stage-a step; the training curve
is the one the online teacher gives with the same views (tests/test_teacher_cache.py).

On disk, in the stage's directory:

  teacher_cache/spec.json                  what the maps were made from (teacher, tap, data, views, seed)
  teacher_cache/chunk_<first>-<end>.npy    (end - first, K, h, w, c) float32, for training examples first..end-1

Each chunk is written aside and renamed into place, so a killed run leaves only whole chunks, and the next run
computes the missing ones. Chunk j is computed by process j % process_count on its own devices; every process then
reads all of them (memory-mapped), from the workdir that the processes share as they do for Orbax's checkpoints.
A cache whose spec.json differs from the run's (another teacher, tap, seed, data or number of views) is replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Callable

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from fn2en_jax.data import pipeline
from fn2en_jax.train import parallel

DIRNAME = 'teacher_cache'
SPEC = 'spec.json'
CHUNK = 256  # training examples per file


def fingerprint(*arrays: np.ndarray) -> str:
  """A short digest of arrays' bytes: which teacher weights, which training examples a cache was made from."""
  digest = hashlib.sha256()
  for array in arrays:
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]


def teacher_fingerprint(teacher_vars) -> str:
  """The digest of this process's copy of the (replicated) teacher variables."""
  leaves = jax.tree.leaves(teacher_vars)
  return fingerprint(*(np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x) for x in leaves))


def examples_fingerprint(examples: pipeline.Examples) -> str:
  return fingerprint(np.asarray(examples.indices, np.int64), np.asarray(examples.labels, np.int64),
                     np.asarray([s.encode() for s in examples.subjects]))


class Targets:
  """The cached maps as one (N, K, h, w, c) array, memory-mapped chunk by chunk: `targets[i, k]` is the teacher's
  map of view k of training example i."""

  def __init__(self, directory: str, num_examples: int):
    self._chunks = [np.load(os.path.join(directory, _chunk_name(first, end)), mmap_mode='r')
                    for first, end in _chunk_ranges(num_examples)]
    self.shape = (num_examples,) + self._chunks[0].shape[1:]

  def __getitem__(self, key: tuple[int, int]) -> np.ndarray:
    i, view = key
    return self._chunks[i // CHUNK][i % CHUNK, view]


def _chunk_ranges(num_examples: int) -> list[tuple[int, int]]:
  return [(first, min(first + CHUNK, num_examples)) for first in range(0, num_examples, CHUNK)]


def _chunk_name(first: int, end: int) -> str:
  return f'chunk_{first:07d}-{end:07d}.npy'


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _prepare(directory: str, spec: dict) -> None:
  """Makes `directory` hold a cache of `spec`: kept when its spec.json is the same, else emptied (process 0)."""
  path = os.path.join(directory, SPEC)
  if jax.process_index() == 0:
    if os.path.exists(path):
      with open(path) as f:
        old = json.load(f)
      if old != spec:
        changed = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        logging.warning('teacher cache in %s was made with another %s; computing it again', directory,
                        ', '.join(changed))
        shutil.rmtree(directory)
    os.makedirs(directory, exist_ok=True)
    if not os.path.exists(path):
      with open(f'{path}.tmp', 'w') as f:
        json.dump(spec, f, indent=2, sort_keys=True)
      os.replace(f'{path}.tmp', path)
  _barrier('teacher_cache_prepare')


def load_or_build(directory: str, spec: dict, examples: pipeline.Examples, data_cfg, *, seed: int, views: int,
                  batch_size: int, teacher_map: Callable[[np.ndarray], np.ndarray]) -> Targets:
  """The cached maps of every view of every training example, computing the chunks that are missing.

  `teacher_map`: a batch of `batch_size` preprocessed images -> their teacher maps (numpy), on this process's
  devices. `spec` identifies what the maps depend on (it must include `views` and `seed`).
  """
  _prepare(directory, spec)
  compute_chunks(directory, examples, data_cfg, seed=seed, views=views, batch_size=batch_size,
                 teacher_map=teacher_map, host=(jax.process_index(), jax.process_count()))
  _barrier('teacher_cache_built')
  return Targets(directory, len(examples))


def compute_chunks(directory: str, examples: pipeline.Examples, data_cfg, *, seed: int, views: int, batch_size: int,
                   teacher_map: Callable[[np.ndarray], np.ndarray], host: tuple[int, int]) -> None:
  """Computes and writes the missing chunks of host `host` = (index, count): chunk j is host j % count's."""
  index, hosts = host
  ranges = _chunk_ranges(len(examples))
  todo = [(first, end) for j, (first, end) in enumerate(ranges)
          if j % hosts == index and not os.path.exists(os.path.join(directory, _chunk_name(first, end)))]
  if todo:
    logging.info('teacher cache: %d of %d chunks to compute here (%d examples x %d views each), in %s', len(todo),
                 len(ranges), CHUNK, views, directory)
  started = time.time()
  for done, (first, end) in enumerate(todo, 1):
    images = np.stack([pipeline.view_image(examples[i]['image'], data_cfg, seed=seed, index=i, view=view)
                       for i in range(first, end) for view in range(views)])
    # Fixed-size batches, the last one padded (one compiled program for all); this process alone computes them.
    maps = np.concatenate([np.asarray(teacher_map(batch['image']))[batch['mask']]
                           for batch in pipeline.eval_batches({'image': images}, batch_size, host=(0, 1))])
    maps = maps.reshape((end - first, views) + maps.shape[1:]).astype(np.float32)
    path = os.path.join(directory, _chunk_name(first, end))
    with open(f'{path}.tmp', 'wb') as f:
      np.save(f, maps)
    os.replace(f'{path}.tmp', path)
    elapsed = time.time() - started
    logging.info('teacher cache: chunk %d of %d done, ETA %.0f s', done, len(todo),
                 elapsed / done * (len(todo) - done))


def local_teacher_map(map_fn: Callable, teacher_vars) -> Callable[[np.ndarray], np.ndarray]:
  """`map_fn(variables, images)` as a jitted function of a numpy batch on this process's own devices only, so that
  each process computes its own chunks without the others (the teacher's forward pass has no collectives)."""
  mesh = parallel.make_mesh(jax.local_devices())
  local_vars = jax.tree.map(
      lambda x: jax.device_put(np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x),
                               parallel.replicated(mesh)), teacher_vars)
  apply = parallel.data_parallel_eval(lambda variables, batch, _: map_fn(variables, batch['image']), mesh)
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(parallel.AXIS))
  return lambda images: apply(local_vars, {'image': jax.device_put(images, batch_sharding)}, None)
