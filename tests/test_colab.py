"""The evaluation notebook runs, cell by cell, on a finished workdir and re-evaluates the same numbers."""

import json
import os

import matplotlib
import numpy as np

from conftest import REPO

matplotlib.use('Agg')


def _code_cells():
  with open(os.path.join(REPO, 'colab', 'evaluate.ipynb')) as f:
    notebook = json.load(f)
  assert notebook['nbformat'] == 4
  for cell in notebook['cells']:
    if cell['cell_type'] == 'code':
      # Shell lines (`!pip install ...`) are Colab's setup; here the package is already installed.
      yield ''.join(line for line in cell['source'] if not line.lstrip().startswith('!'))


def test_evaluation_notebook_on_a_finished_run(tiny_run, capsys):
  workdir, data_dir, _ = tiny_run
  expected = json.loads((workdir / 'results.json').read_text())['stages']
  namespace = {}
  for source in _code_cells():
    if source.startswith('WORKDIR'):
      source = f'WORKDIR = {str(workdir)!r}\nDATA_DIR = {str(data_dir)!r}\n'
    exec(compile(source, 'evaluate.ipynb', 'exec'), namespace)  # pylint: disable=exec-used
  summaries = namespace['summaries']
  for stage in ('scratch', 'face', 'b'):
    assert summaries[stage]['accuracy'] == expected[stage]['accuracy']
    np.testing.assert_array_equal(summaries[stage]['confusion_matrix'], expected[stage]['confusion_matrix'])
  printed = capsys.readouterr().out
  assert 'neutral' in printed and 'surprise' in printed  # the per-class table
