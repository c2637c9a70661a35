"""Stage a with the teacher's maps cached (`stage_a.cache_teacher`): the same training curve as the online teacher
with the same fixed views, the stored maps equal to the teacher's, chunks resumed, a changed cache replaced."""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_config

from fn2en_jax import errors, evaluate, experiment
from fn2en_jax.data import pipeline
from fn2en_jax.stages import Context, a as stage_a, teacher_cache
from fn2en_jax.train import parallel

VIEWS = 3


def _config(data_dir, **stage_a):
  config = tiny_config.get_config()
  config.data_dir = str(data_dir)
  config.stages = ('a',)
  config.stage_a.update(dict(views=VIEWS, log_every=1, **stage_a))
  return config


def _state(stage_dir, step):
  with ocp.PyTreeCheckpointer() as ckpt:
    return ckpt.restore(os.path.join(stage_dir, str(step), 'state'))


@pytest.fixture(scope='module')
def online_and_cached(tmp_path_factory, tiny_run):
  """Stage a trained twice from the tiny run's face net, with the same 3 fixed views per image: the teacher run at
  every step, and its maps read from the cache."""
  workdir, data_dir, _ = tiny_run
  runs = {}
  for name, cache in (('online', False), ('cached', True)):
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(workdir / 'face', root / 'face')
    runs[name] = root, experiment.run(_config(data_dir, cache_teacher=cache), str(root))
  return runs


def test_cached_teacher_gives_the_online_training_curve(online_and_cached):
  (online, online_summary), (cached, cached_summary) = online_and_cached['online'], online_and_cached['cached']
  assert not (online / 'a' / teacher_cache.DIRNAME).exists()
  assert (cached / 'a' / teacher_cache.DIRNAME).is_dir()
  # The loss of every step (logged at each one), and the parameters it ends with: the maps are the same numbers,
  # computed in other batches, so at most float rounding apart.
  steps, losses = evaluate.training_curves(str(online / 'a'))['train/loss']
  cached_steps, cached_losses = evaluate.training_curves(str(cached / 'a'))['train/loss']
  assert steps == cached_steps == [1, 2, 3, 4]
  np.testing.assert_allclose(cached_losses, losses, rtol=1e-5)
  assert len(set(losses)) == 4  # the student learns: the curve is not flat
  for step in (2, 4):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                 _state(online / 'a', step)['params'], _state(cached / 'a', step)['params'])
  np.testing.assert_allclose(cached_summary['a']['lp_loss'], online_summary['a']['lp_loss'], rtol=1e-5)


def test_the_stored_maps_are_the_teachers_maps_of_each_view(online_and_cached, tiny_run):
  _, data_dir, _ = tiny_run
  root, _ = online_and_cached['cached']
  config = _config(data_dir, cache_teacher=True)
  mesh = parallel.make_mesh()
  ctx = Context(name='a', workdir=str(root), data_dir=str(data_dir), mesh=mesh, seed=config.seed)
  train = pipeline.splits(config.data, str(data_dir)).train
  targets = teacher_cache.Targets(str(root / 'a' / teacher_cache.DIRNAME), len(train))
  teacher, teacher_vars = stage_a.load_teacher(config, ctx, len(train.class_names))
  assert targets.shape[:2] == (len(train), VIEWS)
  for i, view in ((0, 0), (len(train) - 1, VIEWS - 1), (5, 1)):
    image = pipeline.view_image(train[i]['image'], config.data, seed=config.seed, index=i, view=view)
    expected = stage_a.teacher_map(teacher, teacher_vars, image[None], tap=config.teacher.tap,
                                   size=targets.shape[2:4])
    np.testing.assert_allclose(targets[i, view], np.asarray(expected)[0], rtol=1e-5, atol=1e-6)
  # The views differ (crops and flips), so the maps do.
  assert not np.allclose(targets[0, 0], targets[0, 1]) or not np.allclose(targets[0, 0], targets[0, 2])


def _stand_in_teacher(calls):
  def teacher_map(images):
    calls.append(len(images))
    return images.mean(axis=(1, 2), keepdims=True)  # (batch, 1, 1, 3) per view
  return teacher_map


def _examples(n):
  rng = np.random.default_rng(0)
  records = [{'image': rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), 'label': i % 2} for i in range(n)]
  return pipeline.Examples(records, np.arange(n), np.array([r['label'] for r in records]),
                           np.array([f's{i // 2}' for i in range(n)]), ('x', 'y'))


def test_chunks_are_shared_by_hosts_resumed_and_replaced_when_the_spec_changes(tmp_path, monkeypatch):
  monkeypatch.setattr(teacher_cache, 'CHUNK', 4)
  examples, data_cfg = _examples(10), tiny_config.get_config().data
  data_cfg.image_size = 8
  spec = dict(teacher='t1', views=2, seed=0)
  kwargs = dict(seed=0, views=2, batch_size=4)
  teacher_cache._prepare(str(tmp_path), spec)  # pylint: disable=protected-access
  # Two hosts: each computes the chunks j with j % 2 == its index (host 0: chunks 0 and 2, 8 + 4 views in batches
  # of 4; host 1: chunk 1), then every host reads all of them.
  for host, expected in ((0, [4, 4, 4]), (1, [4, 4])):
    calls = []
    teacher_cache.compute_chunks(str(tmp_path), examples, data_cfg, teacher_map=_stand_in_teacher(calls),
                                 host=(host, 2), **kwargs)
    assert calls == expected
  targets = teacher_cache.Targets(str(tmp_path), len(examples))
  assert targets.shape == (10, 2, 1, 1, 3)
  for i in range(10):
    for view in range(2):
      image = pipeline.view_image(examples[i]['image'], data_cfg, seed=0, index=i, view=view)
      np.testing.assert_allclose(targets[i, view], image.mean(axis=(0, 1), keepdims=True), rtol=1e-6)

  # A killed run: the chunk it was writing is missing; only that one is computed again, on one host.
  os.remove(tmp_path / 'chunk_0000004-0000008.npy')
  before = {n: os.path.getmtime(tmp_path / n) for n in os.listdir(tmp_path)}
  calls = []
  again = teacher_cache.load_or_build(str(tmp_path), spec, examples, data_cfg, teacher_map=_stand_in_teacher(calls),
                                      **kwargs)
  assert calls == [4, 4]
  assert all(os.path.getmtime(tmp_path / n) == t for n, t in before.items())
  np.testing.assert_array_equal(again[5, 1], targets[5, 1])

  # Another teacher: everything is computed again.
  calls = []
  teacher_cache.load_or_build(str(tmp_path), dict(spec, teacher='t2'), examples, data_cfg,
                              teacher_map=_stand_in_teacher(calls), **kwargs)
  assert sum(calls) == 20


def test_cache_teacher_needs_fixed_views(tmp_path):
  config = _config(tmp_path, cache_teacher=True)
  config.stage_a.views = 0
  with pytest.raises(errors.ConfigError, match='cache_teacher=True .*stage_a.views=0'):
    stage_a.validate(config)
