"""Stage a with the teacher's maps cached (`stage_a.cache_teacher`): the same training curve as the online teacher
with the same fixed views, the stored maps equal to the teacher's, chunks resumed, a changed cache replaced."""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_config

from fn2en_jax import errors, experiment
from fn2en_jax.commands import evaluate
from fn2en_jax.data import pipeline
from fn2en_jax.stages import Context, a as stage_a, teacher_cache
from fn2en_jax.train import parallel

VIEWS = 3
U = 2.0 ** -24  # float32's unit roundoff


def gamma(n):
  """Any order of a float32 sum of n + 1 terms is within gamma(n) x the sum of their magnitudes of the exact sum
  (Higham, Accuracy and Stability of Numerical Algorithms, 4.2); two orders, within twice that."""
  return n * U / (1 - n * U)


# The longest chain of float32 sums that one of stage a's steps depends on (tests/test_distributed.py counts it):
# the teacher's forward pass to pool5, the student's forward and backward pass and BatchNorm's sums, the kernel
# gradients' sums over a device's positions and the 4-device mean, n < 11,000; the teacher's forward pass alone
# (13 convolutions of 9 C_in products and a bias: 2128).
STEP_CHAIN, TEACHER_CHAIN = 11_000, 2128


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
  every step, and its maps read from the cache. With SGD at a constant rate (the tiny config's; said here too, since
  the comparison depends on it): AdamW divides each update by the root of its second moment, so that an element whose gradient is ~0 moves anywhere in +-lr on
  rounding alone, and two runs a rounding apart may end up to 2 lr per step apart in any element; SGD's update, and
  its rounding error, are proportional to the gradient."""
  workdir, data_dir, _ = tiny_run
  runs = {}
  for name, cache in (('online', False), ('cached', True)):
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(workdir / 'face', root / 'face')
    config = _config(data_dir, cache_teacher=cache, optimizer='sgd', schedule='constant')
    runs[name] = root, experiment.run(config, str(root))
  return runs


@pytest.mark.slow
def test_cached_teacher_gives_the_online_training_curve(online_and_cached):
  (online, online_summary), (cached, cached_summary) = online_and_cached['online'], online_and_cached['cached']
  assert not (online / 'a' / teacher_cache.DIRNAME).exists()
  assert (cached / 'a' / teacher_cache.DIRNAME).is_dir()
  # The loss of every step (logged at each one), and the parameters it ends with: the maps are the same numbers,
  # computed in other batches, so the runs differ in the order of float32 sums only: in the teacher's, and, the
  # programs being different, possibly in the student's. Each step's result is then off by at most C u times what
  # the step added, C = 2 x STEP_CHAIN (relative errors adding along the chain where no sum cancels at the scale of
  # its result), and every step rounds each parameter to float32 (2 u |x| at most); with a constant rate and
  # momentum no step adds more than the last two steps did (S), so after k steps
  #     |cached - online| <= u (2 k max|x| + C k S).
  # The loss of step t is one more result of that chain, on parameters t - 1 steps apart: within C u times the sum
  # of the losses up to it. The test-set Lp loss likewise, on the state of the chosen step.
  c = 2 * STEP_CHAIN
  steps, losses = evaluate.training_curves(str(online / 'a'))['train/loss']
  cached_steps, cached_losses = evaluate.training_curves(str(cached / 'a'))['train/loss']
  assert steps == cached_steps == [1, 2, 3, 4]
  bound = U * c * np.cumsum(np.abs(losses))
  assert np.all(np.abs(np.subtract(cached_losses, losses)) <= bound), (cached_losses, losses, bound)
  assert len(set(losses)) == 4  # the student learns: the curve is not flat
  online_params = {step: _state(online / 'a', step)['params'] for step in (2, 4)}
  moved = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), online_params[4], online_params[2])
  for step in (2, 4):
    jax.tree.map(lambda x, y, s: np.testing.assert_allclose(x, y, rtol=0, atol=U * step * (
        2 * float(np.max(np.abs(y))) + c * s), err_msg=f'step {step}'),
                 _state(cached / 'a', step)['params'], online_params[step], moved)
  # The bound stays under a tenth of what two steps move each kernel: other maps would not fit in it.
  jax.tree.map(lambda y, s: y.ndim < 2 or _assert_below(U * 4 * (2 * float(np.max(np.abs(y))) + c * s), s / 10),
               online_params[4], moved)
  chosen = online_summary['a']['selected_step']
  assert cached_summary['a']['selected_step'] == chosen
  np.testing.assert_allclose(cached_summary['a']['lp_loss'], online_summary['a']['lp_loss'], rtol=U * c * (chosen + 1))


def _assert_below(value, limit):
  assert value < limit, (value, limit)
  return True


@pytest.mark.slow
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
    # The same forward pass in a batch of one here, in the cache's batches there: the same sums, perhaps in other
    # orders, so within 2 TEACHER_CHAIN u of the map's scale.
    expected = np.asarray(expected)[0]
    np.testing.assert_allclose(targets[i, view], expected, rtol=0,
                               atol=2 * TEACHER_CHAIN * U * float(np.max(np.abs(expected))))
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
      # A mean over the 8 x 8 pixels, of a batch there and of one image here: within 2 gamma(63) of the mean
      # magnitude.
      np.testing.assert_allclose(targets[i, view], image.mean(axis=(0, 1), keepdims=True), rtol=0,
                                 atol=2 * gamma(63) * float(np.max(np.abs(image).mean(axis=(0, 1)))))

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
