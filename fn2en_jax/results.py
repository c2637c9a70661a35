"""What a run writes: the results table in the paper's form (results.md, results.json and one confusion-matrix PNG
per row of the table). Its rows are the stages' own (`stages.Role`); the numbers in them come from metrics.py."""

from __future__ import annotations

import os

import numpy as np

from fn2en_jax import stages
from fn2en_jax import workdir as workdir_lib

def results_table(summaries: dict[str, dict]) -> str:
  """The markdown table of the rows whose stages ran."""
  lines = ['| method | accuracy | mean per-class accuracy |', '| --- | --- | --- |']
  for row, stage in stages.rows():
    if stage in summaries:
      s = summaries[stage]
      lines.append(f"| {row} | {100 * s['accuracy']:.2f} | {100 * s['mean_per_class_accuracy']:.2f} |")
  return '\n'.join(lines)


def pyplot():
  """matplotlib's pyplot on the file-only backend (no display on training machines); imported when first drawn."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_confusion(counts, names, title: str, path: str, *, rates: bool = False) -> None:
  """One confusion matrix, counts[true, predicted]: every cell coloured by its rate per true class (0..1, so that
  rare classes read as well as frequent ones) and labelled with its count, or with that rate when `rates`. The
  one drawing of a confusion matrix: results.md's per row, and evaluate's report."""
  plt = pyplot()
  counts = np.asarray(counts, np.float64)
  fraction = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(names), 1.2 + 0.5 * len(names)))
  ax.imshow(fraction, cmap='Blues', vmin=0, vmax=1)
  ax.set_xticks(range(len(names)), names, rotation=45, ha='right')
  ax.set_yticks(range(len(names)), names)
  if len(names) <= 20:  # beyond that (identities) the numbers would not be legible
    for (i, j), v in np.ndenumerate(fraction if rates else counts):
      ax.text(j, i, f'{v:.2f}' if rates else int(v), ha='center', va='center', fontsize=7,
              color='white' if fraction[i, j] > 0.5 else 'black')
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_results(workdir: str, summaries: dict[str, dict], config_dict: dict, test_set: str) -> str:
  """Writes results.md, results.json and one confusion-matrix PNG per row; returns the table."""
  table = results_table(summaries)
  rows = {row: stage for row, stage in stages.rows() if stage in summaries}
  for row, stage in rows.items():
    summary = summaries[stage]
    plot_confusion(summary['confusion_matrix'], summary['class_names'], f"{row}: {100 * summary['accuracy']:.1f}%",
                   os.path.join(workdir, f'confusion_{stage}.png'))
  times = '\n'.join(f"- {stage}: {s['wall_time_s']:.1f} s" for stage, s in summaries.items())
  chosen = '\n'.join(f"- {stage}: step {s['selected_step']}, {s['selected_by']}" for stage, s in summaries.items()
                     if 'selected_step' in s)
  workdir_lib.write_text(os.path.join(workdir, 'results.md'),
                         f'{table}\n\nMeasured on {test_set}, once, on the checkpoint of each stage chosen as:\n\n'
                         f'{chosen}\n\nWall time per stage:\n\n{times}\n')
  # Written last: a fold with results.json is finished (kfold.finished_summaries).
  workdir_lib.write_json(os.path.join(workdir, workdir_lib.RESULTS_JSON),
                         {'rows': rows, 'test_set': test_set, 'stages': summaries, 'config': config_dict})
  return table
