"""`--config.data.fold=-1` end to end: every fold in its own workdir, face_pretrain trained once and shared, the
report against the folds' own results.json, reruns that skip finished folds; on tiny synthetic faces, and on the
CK+ fixture through configs/ck_plus.py itself."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fixtures_datasets as fx
from fn2en_jax import experiment, kfold

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = {'Train from scratch (BN)': 'scratch', 'Face net fine-tune (baseline)': 'face', 'FN2EN': 'b'}
FOLD_STAGES = ['face', 'a', 'b', 'scratch']
# Log, evaluate and checkpoint each 4-step stage once, at its end: a checkpoint costs more than the steps here.
ONLY_AT_THE_END = ('log_every', 'eval_every', 'checkpoint_every')


def _start(*args):
  """`python -m fn2en_jax.main *args`, started; _finish waits for it and returns its stdout."""
  # The session's 4 devices (tests/conftest.py), as the tiny run trains: the folds' steps are its programs, which
  # the shared compilation cache already holds once it has run.
  out, err = tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')  # files: no pipe fills while others run
  return subprocess.Popen([sys.executable, '-m', 'fn2en_jax.main', *args], cwd=REPO, stdout=out,
                          stderr=err, text=True), out, err


def _finish(started):
  proc, out, err = started
  try:
    code = proc.wait(timeout=600)
  finally:
    proc.kill()
  out.seek(0)
  err.seek(0)
  stdout, stderr = out.read(), err.read()
  out.close()
  err.close()
  assert code == 0, stderr[-3000:]
  return stdout


def _main(*args):
  return _finish(_start(*args))


def _results(workdir, fold):
  with open(os.path.join(workdir, f'fold_{fold}', 'results.json')) as f:
    return json.load(f)


def _check_report(workdir, num_folds, paper):
  """kfold.json and kfold.md against each fold's results.json, with the statistics computed here by NumPy."""
  with open(os.path.join(workdir, 'kfold.json')) as f:
    report = json.load(f)
  with open(os.path.join(workdir, 'kfold.md')) as f:
    table = f.read()
  assert report['num_folds'] == num_folds and list(report['rows']) == list(ROWS)
  folds = [_results(workdir, i)['stages'] for i in range(num_folds)]
  for row, stage in ROWS.items():
    got = report['rows'][row]
    cells = []
    for metric in ('accuracy', 'mean_per_class_accuracy'):
      values = np.array([f[stage][metric] for f in folds])
      assert got[metric] == list(values)
      assert got[f'{metric}_mean'] == pytest.approx(values.mean(), abs=1e-12)
      assert got[f'{metric}_std'] == pytest.approx(values.std(ddof=1), abs=1e-12)
      cells.append(' | '.join(f'{100 * v:.2f}' for v in [*values, values.mean(), values.std(ddof=1)]))
    assert got['paper_accuracy'] == (None if paper[stage] is None else pytest.approx(paper[stage] / 100))
    assert f"| {row} | {cells[0]} | {'n/a' if paper[stage] is None else f'{paper[stage]:.2f}'} |" in table
    assert f'| {row} | {cells[1]} |' in table
    assert got['num_examples'] == [f[stage]['num_examples'] for f in folds]
  return report


@pytest.fixture(scope='module')
def synth_kfold(tmp_path_factory):
  root = tmp_path_factory.mktemp('kfold')
  workdir = root / 'work'
  args = ['--config=tests/tiny_config.py', f'--workdir={workdir}', f'--config.data_dir={root / "tfds"}',
          '--config.data.fold=-1', '--config.data.num_folds=2',
          # 8 identities like the 8 expressions: face_pretrain and face then compile the same programs.
          '--config.face_data.builder_options.num_subjects=8',
          *(f'--config.stage_{stage}.{k}=4' for stage in ['face_pretrain', *FOLD_STAGES] for k in ONLY_AT_THE_END)]
  return workdir, args, _main(*args)


RERUN_KEEPS = ('fold_0/results.json', 'fold_1/results.json', 'face_net/face_net.json', 'face_pretrain/summary.json')


@pytest.fixture(scope='module')
def rerun_and_ck_plus(synth_kfold, tmp_path_factory):
  """After the synthetic run: its rerun, and configs/ck_plus.py as written, shrunk to seconds, on the CK+ fixture
  with the synthetic run's face net as teacher.init, started together (each is mostly a process's start and XLA
  compiling, which two cores do side by side). Returns what the tests below check."""
  workdir, args, _ = synth_kfold
  out = {'mtimes': [os.stat(workdir / p).st_mtime_ns for p in RERUN_KEEPS],
         'report': (workdir / 'kfold.json').read_text()}
  root = tmp_path_factory.mktemp('ck_plus')
  out['expected'] = fx.write_ck_plus(root / 'ck_plus', np.random.default_rng(0))['8class']
  # The recipe's budgets are in epochs; 0 epochs hands each back to the step counts given here.
  tiny = dict(num_steps=4, batch_size=8, warmup_steps=0, optimizer='adamw', learning_rate=1e-3, weight_decay=5e-4,
              num_epochs=0, warmup_epochs=0, eval_every_epochs=0, checkpoint_every_epochs=0,
              **{k: 4 for k in ONLY_AT_THE_END})
  overrides = {'data.manual_dir': root / 'ck_plus', 'data_dir': root / 'tfds', 'data.image_size': 32,
               'data.num_folds': 2, 'data.fold': -1, 'data.num_threads': 1, 'data.prefetch': 2,
               'data.validation': 0,  # a fold of this 2-subject fixture trains on one subject: none to hold out
               'teacher.init': workdir / 'face_net', 'student.widths': '(4, 4, 8, 8, 8)', 'student.fc_dim': 16,
               'compilation_cache_dir': '',
               **{f'stage_{stage}.{k}': v for stage in FOLD_STAGES for k, v in tiny.items()}}
  out['ck_plus'] = root / 'work'
  rerun = _start(*args)
  ck_plus = _start('--config=configs/ck_plus.py', f'--workdir={out["ck_plus"]}',
                   *(f'--config.{k}={v}' for k, v in overrides.items()))
  out['rerun_stdout'], out['ck_plus_stdout'] = _finish(rerun), _finish(ck_plus)
  return out


@pytest.mark.slow
def test_synth_kfold_runs_every_fold_and_reports_them(synth_kfold):
  workdir, _, stdout = synth_kfold
  assert sorted(os.listdir(workdir)) == ['config.json', 'face_net', 'face_pretrain', 'fold_0', 'fold_1', 'kfold.json',
                                     'kfold.md']
  with open(workdir / 'face_net' / 'face_net.json') as f:
    assert json.load(f)['model'] == 'vgg_face'
  for fold in range(2):
    results = _results(workdir, fold)
    config = results['config']
    assert config['data']['fold'] == fold
    assert config['teacher']['init'] == str(workdir / 'face_net')  # face_pretrain ran once, for both folds
    assert config['stages'] == FOLD_STAGES and list(results['stages']) == FOLD_STAGES
    assert not (workdir / f'fold_{fold}' / 'face_pretrain').exists()
  report = _check_report(workdir, 2, {'scratch': None, 'face': None, 'b': None})
  # Every one of the 8 subjects (8 faces each) is tested in exactly one fold.
  for row in report['rows'].values():
    assert sum(row['num_examples']) == 64
  assert (workdir / 'kfold.md').read_text().strip() in stdout


@pytest.mark.slow
def test_rerun_skips_finished_folds(synth_kfold, rerun_and_ck_plus):
  workdir = synth_kfold[0]
  out = rerun_and_ck_plus
  assert [os.stat(workdir / p).st_mtime_ns for p in RERUN_KEEPS] == out['mtimes']
  assert (workdir / 'kfold.json').read_text() == out['report']
  assert (workdir / 'kfold.md').read_text().strip() in out['rerun_stdout']


@pytest.mark.slow
def test_kfold_of_configs_ck_plus_on_the_ck_plus_fixture(rerun_and_ck_plus):
  """configs/ck_plus.py as written, shrunk to seconds, with the synthetic run's face net as teacher.init."""
  out, expected = rerun_and_ck_plus['ck_plus'], rerun_and_ck_plus['expected']
  report = _check_report(out, 2, {'scratch': 88.7, 'face': 89.9, 'b': 96.8})
  # The fixture's subjects, sorted, dealt into 2 folds: fold i tests subjects[i::2], exactly their examples.
  subjects = sorted({subject for subject, *_ in expected})
  sizes = [sum(1 for subject, *_ in expected if subject in subjects[i::2]) for i in range(2)]
  for row in report['rows'].values():
    assert row['num_examples'] == sizes
  assert 'ck_plus/8class, 2 subject-independent folds' in (out / 'kfold.md').read_text()


def _summary(accuracy, per_class, n):
  return {'accuracy': accuracy, 'mean_per_class_accuracy': per_class, 'num_examples': n}


def test_summarize_against_numpy():
  folds = [{'scratch': _summary(0.5, 0.4, 10), 'face': _summary(0.7, 0.6, 10), 'b': _summary(0.9, 0.85, 10)},
           {'scratch': _summary(0.6, 0.5, 12), 'face': _summary(0.65, 0.7, 12), 'b': _summary(0.8, 0.75, 12)},
           {'scratch': _summary(0.1, 0.3, 11), 'face': _summary(0.75, 0.5, 11), 'b': _summary(1.0, 1.0, 11)}]
  config = _ck_plus_config()
  report = kfold.summarize(folds, config.paper.to_dict(), config)
  assert report['protocol'] == 'ck_plus/8class, 10 subject-independent folds'
  assert list(report['rows']) == list(ROWS)
  for row, stage in ROWS.items():
    for metric in ('accuracy', 'mean_per_class_accuracy'):
      values = np.array([f[stage][metric] for f in folds])
      assert report['rows'][row][f'{metric}_mean'] == pytest.approx(values.mean(), abs=1e-12)
      assert report['rows'][row][f'{metric}_std'] == pytest.approx(values.std(ddof=1), abs=1e-12)
  assert report['rows']['FN2EN']['paper_accuracy'] == pytest.approx(0.968)
  table = kfold.report_markdown(report)
  # scratch accuracies 50, 60, 10: mean 40, sample std sqrt((100 + 400 + 900) / 2) = 26.46.
  assert '| Train from scratch (BN) | 50.00 | 60.00 | 10.00 | 40.00 | 26.46 | 88.70 |' in table
  assert 'Test examples per fold: 10, 12, 11.' in table


def test_unknown_paper_row_fails_before_any_training(tmp_path):
  config = _ck_plus_config()
  config.paper.vgg = 90.0
  config.stages = ('scratch',)  # no face net needed: the paper's rows are what is wrong here
  with pytest.raises(ValueError, match=r"config.paper: unknown row\(s\) \['vgg'\]"):
    experiment.run(config, str(tmp_path))
  assert not os.listdir(tmp_path)


def _ck_plus_config():
  spec = importlib.util.spec_from_file_location('ck_plus_config', os.path.join(REPO, 'configs', 'ck_plus.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_pooled_seeds_against_numpy_and_from_the_command_line(tmp_path):
  config = _ck_plus_config()
  rng = np.random.default_rng(0)
  accuracy = {stage: rng.uniform(0.3, 0.9, size=(3, 4)) for stage in ROWS.values()}  # 3 seeds x 4 folds
  for seed in range(3):
    folds = [{stage: _summary(accuracy[stage][seed, i], accuracy[stage][seed, i] / 2, 10) for stage in ROWS.values()}
             for i in range(4)]
    config.seed = seed
    (tmp_path / f'seed{seed}').mkdir()
    kfold.write_report(str(tmp_path / f'seed{seed}'), folds, config)
  out = subprocess.run([sys.executable, '-m', 'fn2en_jax.kfold',
                        f'--workdirs={",".join(str(tmp_path / f"seed{s}") for s in range(3))}',
                        f'--output={tmp_path / "pooled"}'], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  pooled = json.loads((tmp_path / 'pooled.json').read_text())
  assert (pooled['runs'], pooled['folds_per_run'], pooled['seeds']) == (3, 4, [0, 1, 2])
  for row, stage in ROWS.items():
    values = accuracy[stage]
    got = pooled['rows'][row]['accuracy']
    assert got['mean'] == pytest.approx(values.mean(), abs=1e-12)
    assert got['std'] == pytest.approx(values.std(ddof=1), abs=1e-12)
    assert got['std_of_run_means'] == pytest.approx(values.mean(axis=1).std(ddof=1), abs=1e-12)
  diff = accuracy['b'] - accuracy['scratch']
  scratch = pooled['fn2en_minus']['Train from scratch (BN)']
  assert scratch['mean'] == pytest.approx(diff.mean(), abs=1e-12)
  assert scratch['sem'] == pytest.approx(diff.std(ddof=1) / np.sqrt(12), abs=1e-12)
  assert scratch['wins'] == int((diff > 0).sum())
  assert 'FN2EN' not in pooled['fn2en_minus']
  assert (tmp_path / 'pooled.md').read_text() in out.stdout
  assert f'| FN2EN | {100 * accuracy["b"].mean():.2f} +- {100 * accuracy["b"].std(ddof=1):.2f} |' in out.stdout


def test_pooling_a_run_that_is_not_a_kfold_run_fails_in_one_line(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'fn2en_jax.kfold', f'--workdirs={tmp_path}'], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 3, out.stderr
  assert out.stderr.strip().splitlines() == [
      f'error: {tmp_path}/kfold.json does not exist: {tmp_path} is not a finished k-fold run',
      'remedy: pass the --workdir of runs made with --config.data.fold=-1, after they finished']
