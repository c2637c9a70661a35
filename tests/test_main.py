"""End to end: `python -m fn2en_jax.main` on tests/tiny_config.py, its files, its rerun, resume and errors."""

import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_config

from fn2en_jax import experiment
from fn2en_jax import stages
from fn2en_jax.models import expnet
from fn2en_jax.stages import b as stage_b
from fn2en_jax.train import checkpoint, parallel, state as train_state

STAGES = ('face_pretrain', 'face', 'a', 'b', 'scratch')
ROWS = ('Train from scratch (BN)', 'Face net fine-tune (baseline)', 'FN2EN')


def _tiny_config(data_dir):
  config = tiny_config.get_config()
  config.data_dir = str(data_dir)
  return config


def _steps(stage_dir):
  return sorted(int(d) for d in os.listdir(stage_dir) if d.isdigit())


def test_main_writes_table_results_plots_logs_and_checkpoints(tiny_run):
  workdir, _, stdout = tiny_run
  table = (workdir / 'results.md').read_text()
  for row in ROWS:
    assert f'| {row} |' in table and f'| {row} |' in stdout
  results = json.loads((workdir / 'results.json').read_text())
  assert results['rows'] == {'Train from scratch (BN)': 'scratch', 'Face net fine-tune (baseline)': 'face',
                             'FN2EN': 'b'}
  assert results['config']['stages'] == list(STAGES)
  for stage in ('scratch', 'face', 'b'):
    summary = results['stages'][stage]
    counts = np.asarray(summary['confusion_matrix'])
    assert counts.shape == (8, 8)
    # 2 of the 8 subjects are held out, each with 1 neutral + 7 expressions at 1 intensity.
    assert counts.sum() == summary['num_examples'] == 16
    assert summary['accuracy'] == pytest.approx(np.trace(counts) / counts.sum())
    assert f"{100 * summary['accuracy']:.2f}" in table
    with open(workdir / f'confusion_{stage}.png', 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert 'lp_loss' in results['stages']['a']
  for stage in STAGES:
    assert results['stages'][stage]['wall_time_s'] > 0
    assert _steps(workdir / stage)[-1] == 4
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir / stage / 'tensorboard'))


def test_rerun_skips_finished_stages_and_prints_the_same_table(tiny_run, run_main, tmp_path):
  _, data_dir, first = tiny_run
  workdir = tmp_path / 'work'  # the rerun rewrites the results: a copy (with its times) keeps the shared run as is
  shutil.copytree(tiny_run[0], workdir)
  before = {stage: os.path.getmtime(workdir / stage / '4') for stage in STAGES}
  times = json.loads((workdir / 'results.json').read_text())['stages']
  second = run_main(workdir, data_dir)
  table = lambda out: [line for line in out.splitlines() if line.startswith('|')]
  assert table(second) == table(first)
  rerun = json.loads((workdir / 'results.json').read_text())['stages']
  for stage in STAGES:
    assert os.path.getmtime(workdir / stage / '4') == before[stage]  # not trained or saved again
    assert rerun[stage]['wall_time_s'] == times[stage]['wall_time_s']


def test_stage_b_starts_from_the_stage_a_trunk_with_a_fresh_head(tiny_run):
  workdir, data_dir, _ = tiny_run
  config = _tiny_config(data_dir)
  mesh = parallel.make_mesh()
  ctx = stages.Context(name='b', workdir=str(workdir), data_dir=str(data_dir), mesh=mesh, seed=config.seed)
  b = stage_b.setup(config, ctx)
  with ocp.PyTreeCheckpointer() as ckpt:
    a_final = ckpt.restore(checkpoint.trained_state_path(str(workdir / 'a')))
  initial = jax.device_get(b.state)
  # The trunk, parameters and BatchNorm statistics, is the one stage a chose (its best on the validation subjects),
  # leaf for leaf.
  for collection in ('params', 'batch_stats'):
    jax.tree.map(np.testing.assert_array_equal, initial.__getattribute__(collection)['trunk'],
                 a_final[collection]['trunk'])
  assert set(a_final['params']) == {'trunk', 'adapter'} or set(a_final['params']) == {'trunk'}
  # The head is the fresh initialisation of b's own seed, and nothing of a's adapter came along.
  fresh = train_state.init_variables(expnet.from_config(config, 8, axis_name=parallel.AXIS),
                                     stages.stage_rng(config.seed, 'b'), config.data.image_size)
  jax.tree.map(np.testing.assert_array_equal, initial.params['head'], fresh['params']['head'])
  assert set(initial.params) == {'trunk', 'head'}
  # And b's training moved away from that start (the comparison above is not against b's final state).
  with ocp.PyTreeCheckpointer() as ckpt:
    b_final = ckpt.restore(checkpoint.latest_state_path(str(workdir / 'b')))
  assert not np.allclose(b_final['params']['trunk']['conv1']['kernel'], initial.params['trunk']['conv1']['kernel'])


def test_resume_continues_exactly_where_it_stopped(tmp_path, tiny_run):
  workdir, data_dir, _ = tiny_run
  config = _tiny_config(data_dir)
  config.stages = ('scratch',)
  # A copy of the scratch stage as if the run had been killed before its final checkpoint: only step 2 is there.
  shutil.copytree(workdir / 'scratch', tmp_path / 'scratch')
  shutil.rmtree(tmp_path / 'scratch' / '4')
  os.remove(tmp_path / 'scratch' / 'summary.json')
  experiment.run(config, str(tmp_path))
  with ocp.PyTreeCheckpointer() as ckpt:
    straight = ckpt.restore(checkpoint.latest_state_path(str(workdir / 'scratch')))
    resumed = ckpt.restore(checkpoint.latest_state_path(str(tmp_path / 'scratch')))
  assert int(resumed['step']) == 4
  # Same parameters and optimizer state, bit for bit: the data iterator resumed at the same batch.
  jax.tree.map(np.testing.assert_array_equal, resumed['params'], straight['params'])
  jax.tree.map(np.testing.assert_array_equal, resumed['opt_state'], straight['opt_state'])


def test_a_diverging_stage_stops_with_a_clear_error(tmp_path, tiny_run):
  _, data_dir, _ = tiny_run
  config = _tiny_config(data_dir)
  config.stages = ('scratch',)
  config.stage_scratch.update(dict(optimizer='sgd', learning_rate=1e30, warmup_steps=0, schedule='constant'))
  with pytest.raises(FloatingPointError, match='scratch: training diverged at step 2'):
    experiment.run(config, str(tmp_path / 'nan'))


@pytest.mark.parametrize('field, value, message', [
    ('stages', ('b', 'a'), "'b' reads the checkpoint of 'a'"),
    ('stages', ('face', 'c'), "unknown stage"),
    ('stage_a.batch_size', 6, 'stage_a.batch_size=6 must be divisible by the 4 devices'),
    ('stage_b.num_steps', 0, 'stage_b.num_steps must be >= 1'),
    ('data.fold', 7, 'data.fold must be in'),
    ('dtype', 'float16', 'dtype must be one of'),
])
def test_bad_config_fails_early_naming_the_field(tmp_path, field, value, message):
  config = _tiny_config(tmp_path)
  node, _, leaf = field.rpartition('.')
  (config[node] if node else config)[leaf] = value
  with pytest.raises(ValueError, match=message):
    experiment.validate(config)


def test_stage_reads_and_the_order_checks_agree():
  # Every stage that READS another runs after it in the default order, and listing it first is refused, naming both.
  assert stages.STREAMS == STAGES
  for name, module in stages.STAGES.items():
    assert module.NAME == name
    if module.READS is not None:
      assert STAGES.index(module.READS) < STAGES.index(name)
      assert stages.order_errors((name, module.READS)) == [
          f'{name!r} reads the checkpoint of {module.READS!r}, so it must come after it']
      assert stages.order_errors((module.READS, name)) == []
  assert {n: m.READS for n, m in stages.STAGES.items()} == {'face_pretrain': None, 'face': 'face_pretrain',
                                                             'a': 'face', 'b': 'a', 'scratch': None}


def test_every_stage_has_its_own_random_stream():
  keys = [jax.random.key_data(stages.stage_rng(0, name)) for name in STAGES]
  assert len({tuple(np.asarray(k).ravel()) for k in keys}) == len(STAGES)
  # The stream of a stage does not depend on which other stages run: it is the seed folded with a fixed number.
  np.testing.assert_array_equal(jax.random.key_data(stages.stage_rng(3, 'b')),
                                jax.random.key_data(jax.random.fold_in(jax.random.key(3), 3)))


def test_each_step_compiles_once_with_a_padded_last_eval_batch(tmp_path, tiny_run, monkeypatch):
  _, data_dir, _ = tiny_run
  config = _tiny_config(data_dir)
  config.stages = ('scratch',)
  # 16 test faces in batches of 12: the second eval batch is 4 faces and 8 rows of padding.
  config.stage_scratch.update(dict(num_steps=6, batch_size=12, eval_every=2, checkpoint_every=3))
  jitted = []
  for name in ('data_parallel_step', 'data_parallel_eval'):
    original = getattr(parallel, name)
    monkeypatch.setattr(parallel, name, lambda step, mesh, original=original: jitted.append(original(step, mesh))
                        or jitted[-1])
  experiment.run(config, str(tmp_path))
  train_step, eval_step = jitted
  # jit's cache holds one compiled program per distinct input signature: 6 steps and 3 evaluations of 2 batches
  # each, and each compiled exactly once.
  assert (train_step._cache_size(), eval_step._cache_size()) == (1, 1)  # pylint: disable=protected-access
