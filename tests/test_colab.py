"""The evaluation notebook runs, cell by cell, on a finished workdir: it re-evaluates the same numbers, reads the
training curves the loop logged, draws the mistakes and the neurons, and predicts like the evaluation does."""

import json
import os
import shutil
import time

import jax
import matplotlib
import numpy as np
import pytest
import roundoff

from conftest import REPO
from fn2en_jax.data import pipeline
from fn2en_jax.models import preprocess

matplotlib.use('Agg')


def _code_cells():
  with open(os.path.join(REPO, 'colab', 'evaluate.ipynb')) as f:
    notebook = json.load(f)
  assert notebook['nbformat'] == 4
  for cell in notebook['cells']:
    if cell['cell_type'] == 'code':
      # Shell lines (`!pip install ...`) are Colab's setup; here the package is already installed.
      yield ''.join(line for line in cell['source'] if not line.lstrip().startswith('!'))


@pytest.mark.slow  # the notebook end to end: a minute of CPU beside the shared tiny run
def test_evaluation_notebook_on_a_finished_run(tiny_run, tmp_path, capsys):
  workdir = tmp_path / 'work'  # the notebook writes its report into the workdir: a copy keeps the shared run as is
  shutil.copytree(tiny_run[0], workdir)
  data_dir = tiny_run[1]
  expected = json.loads((workdir / 'results.json').read_text())['stages']
  namespace = {}
  # CPU time of this process (XLA's threads included), not wall time: the suite shares its cores with other jobs.
  started = time.process_time()
  for source in _code_cells():
    if source.startswith('WORKDIR'):
      source = f'WORKDIR = {str(workdir)!r}\nDATA_DIR = {str(data_dir)!r}\n'
    exec(compile(source, 'evaluate.ipynb', 'exec'), namespace)  # pylint: disable=exec-used
  elapsed = time.process_time() - started
  printed = capsys.readouterr().out

  summaries = namespace['summaries']
  assert list(summaries) == ['face', 'b', 'scratch']  # the stages of the paper's table, in the run's order
  for stage in ('scratch', 'face', 'b'):
    assert summaries[stage]['accuracy'] == expected[stage]['accuracy']
    np.testing.assert_array_equal(summaries[stage]['confusion_matrix'], expected[stage]['confusion_matrix'])
    assert (workdir / summaries[stage]['figures']['mistakes']).stat().st_size > 2000
  assert 'neutral' in printed and 'surprise' in printed  # the per-class table
  assert (workdir / 'report.md').exists()

  # The curves are what the loop logged: the validation number at the chosen step is results.json's, rounded to
  # float32 as the event files hold it (tf.summary.scalar casts, to nearest): exactly.
  curves = namespace['curves']
  for stage in ('scratch', 'face', 'b'):
    steps, accuracy = curves[stage]['validation/accuracy']
    assert steps == [2, 4]
    chosen = accuracy[steps.index(expected[stage]['selected_step'])]
    assert chosen == float(np.float32(expected[stage]['validation']['accuracy']))
    assert curves[stage]['train/loss'][0] == [2, 4]

  neurons = namespace['neurons']
  assert (workdir / 'neurons' / neurons['figure']).stat().st_size > 10_000
  assert [len(n['neurons']) for n in neurons['nets'].values()] == [3, 3]

  # The predict cell classifies the first test faces as the evaluation does: its probabilities against stage b's
  # model applied here to the evaluation pipeline's own images of those faces.
  predictor, config = namespace['predictor'], namespace['config']
  test = pipeline.splits(config.data, str(data_dir)).test
  images = pipeline.eval_arrays(test, config.data)['image'][:4]
  logits = predictor.model.apply(predictor.variables, images, train=False)
  # The predictor runs the net jitted on the uint8 crops (a batch padded to 64), this op by op on their scaled
  # images: the same operations, the sums in other orders, within twice the bound of tests/roundoff.py on either.
  crops = preprocess.to_uint8(images)
  np.testing.assert_array_equal(preprocess.from_uint8(crops), images)  # the crops the bound is computed on
  _, error = roundoff.bound(predictor.forward, predictor.variables, crops)
  roundoff.assert_within(namespace['probabilities'], jax.nn.softmax(logits), 2 * error)
  assert printed.count('test face ') == 4
  assert elapsed < 90, f'the notebook took {elapsed:.0f} s of CPU time'
