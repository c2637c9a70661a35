"""The report of a finished workdir, re-evaluated from its final checkpoints:

  python -m fn2en_jax.evaluate --workdir=DIR [--data_dir=...]

restores the final checkpoint of every finished stage of DIR (or of every fold of a k-fold DIR), runs the stage's own
evaluation on its test set again, and writes DIR/report.md and DIR/report.json, with the figures in DIR/report/:
confusion matrices (counts, and rates per true class) and a grid of the most confident mistakes. A k-fold DIR gets
one report per fold (DIR/fold_<i>/report.md) and, in DIR/report.md, each method's mean and standard deviation over
the folds beside the paper's number.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from typing import Sequence

import ml_collections
import numpy as np
from absl import flags

from fn2en_jax import cli, errors, kfold, metrics, results
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.data import pipeline
from fn2en_jax.models import preprocess
from fn2en_jax.stages import STAGES, Context, budgeted, classifiers
from fn2en_jax.train import checkpoint, loop, parallel, summaries

REPORT = 'report'  # report.md, report.json and the figures' folder report/


def confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, k: int) -> list[dict]:
  """The `k` wrong predictions made with the highest probability, most confident first: eval index, true and
  predicted class index, and that probability."""
  predictions = probabilities.argmax(-1)
  wrong = np.flatnonzero(predictions != labels)
  confidence = probabilities[wrong, predictions[wrong]]
  order = wrong[np.argsort(-confidence, kind='stable')][:k]
  return [{'index': int(i), 'label': int(labels[i]), 'prediction': int(predictions[i]),
           'confidence': float(probabilities[i, predictions[i]])} for i in order]


def plot_mistakes(images: np.ndarray, mistakes: list[dict], class_names: Sequence[str], title: str, path: str,
                  columns: int = 8) -> None:
  """The faces of `mistakes` in a grid, each titled 'true -> predicted (confidence)'."""
  plt = results.pyplot()
  rows = max(1, -(-len(mistakes) // columns))
  fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows + 0.4), squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, m in zip(axes.flat, mistakes):
    ax.imshow(preprocess.to_uint8(images[m['index']]))
    ax.set_title(f"{class_names[m['label']]}\n-> {class_names[m['prediction']]} ({m['confidence']:.2f})",
                 fontsize=7)
  if not mistakes:
    axes[0, 0].text(0, 0.5, 'no mistakes', fontsize=10)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def training_curves(stage_dir: str) -> dict[str, tuple[list[int], list[float]]]:
  """Every scalar the loop logged for a stage (train/loss, eval/accuracy, ...), read back from the TensorBoard event
  files in <stage_dir>/tensorboard: tag -> (steps, values) in step order; a step logged again by a resumed run
  keeps its newest value."""
  directory = os.path.join(stage_dir, 'tensorboard')
  curves: dict[str, dict[int, float]] = {}
  for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
    for tag, step, value in summaries.read_scalars(os.path.join(directory, name)):
      curves.setdefault(tag, {})[step] = value
  return {tag: (sorted(points), [points[s] for s in sorted(points)]) for tag, points in sorted(curves.items())}


def finished_stages(config, workdir: str) -> list[str]:
  """The stages of `config` (as `stages.budgeted` resolves it) that trained to their end in `workdir`."""
  return [s for s in config.stages if loop.is_finished(workdir, s, config[f'stage_{s}'])]


def restore_final(state, stage_dir: str):
  """`state` with the parameters, BatchNorm statistics and step of the net the stage trained (its chosen checkpoint;
  not its optimizer state or data position, which evaluation does not need)."""
  subset = {'step': state.step, 'params': state.params}
  if state.batch_stats:
    subset['batch_stats'] = state.batch_stats
  restored = checkpoint.restore_subset(checkpoint.trained_state_path(stage_dir), subset)
  return state.replace(step=restored['step'], params=restored['params'],
                       batch_stats=restored.get('batch_stats', state.batch_stats))


def reevaluate_stage(config, name: str, workdir: str, mesh, data_dir: str) -> tuple[dict, dict | None]:
  """(summary, outputs): the stage set up as for training, its final checkpoint restored, and its test set run
  through the loop's evaluation. `outputs` (images, labels, probabilities of the test set) for classifiers."""
  ctx = Context(name=name, workdir=workdir, data_dir=data_dir, mesh=mesh, seed=config.seed)
  stage = STAGES[name].setup(config, ctx)
  state = restore_final(stage.state, ctx.stage_dir)
  if stage.hparams.batch_size % mesh.size:
    raise errors.ConfigError(f'config.stage_{name}.batch_size={stage.hparams.batch_size} does not divide over '
                             f'the {mesh.size} devices here', 'evaluate on as many devices as the run trained on')
  arrays = pipeline.eval_arrays(stage.eval_examples, stage.data_cfg)
  # The loop's own evaluation (its eval step, batches and padding), not a copy of it; a classifier's step also
  # returns its probabilities, from the same forward pass.
  classifies = name in classifiers()
  eval_step = functools.partial(stage.eval_step, probabilities=True) if classifies else stage.eval_step
  outputs = loop.eval_outputs(stage, state, parallel.data_parallel_eval(eval_step, mesh), arrays, mesh)
  summary = stage.summarize(outputs)
  if not classifies:
    return summary, None
  keep = outputs['mask'].astype(bool)
  return summary, {'image': arrays['image'], 'label': outputs['label'][keep],
                   'probabilities': outputs['probabilities'][keep]}


def stage_report(name: str, summary: dict, outputs: dict | None, figures: str, num_mistakes: int) -> dict:
  """The stage's report entry; its figures are drawn into the folder `figures` and named in the entry by their
  path in the workdir (report/<file>)."""
  entry = dict(summary)
  if outputs is None:
    return entry
  names = summary['class_names']
  counts = np.asarray(summary['confusion_matrix'])
  rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  entry['per_class'] = metrics.per_class_scores(counts, names)
  entry['confusion_matrix_rates'] = rates.tolist()
  entry['mistakes'] = [{**m, 'true_class': names[m['label']], 'predicted_class': names[m['prediction']]}
                       for m in confident_mistakes(outputs['label'], outputs['probabilities'], num_mistakes)]
  files = {'confusion_counts': f'confusion_{name}_counts.png', 'confusion_rates': f'confusion_{name}_rates.png',
           'mistakes': f'mistakes_{name}.png'}
  results.plot_confusion(counts, names, f'{name}: counts', os.path.join(figures, files['confusion_counts']))
  results.plot_confusion(counts, names, f'{name}: rate per true class',
                         os.path.join(figures, files['confusion_rates']), rates=True)
  plot_mistakes(outputs['image'], entry['mistakes'], names, f'{name}: the most confident mistakes',
                os.path.join(figures, files['mistakes']))
  entry['figures'] = {k: f'{REPORT}/{v}' for k, v in files.items()}
  return entry


def _percent(value: float) -> str:
  return f'{100 * value:.2f}'


def stage_markdown(name: str, entry: dict) -> str:
  if 'per_class' not in entry:
    return f'## {name}\n\n' + ''.join(f'- {k}: {v:.6g}\n' for k, v in entry.items() if isinstance(v, float))
  lines = [f'## {name}', '',
           f"Accuracy {_percent(entry['accuracy'])}%, mean per-class accuracy "
           f"{_percent(entry['mean_per_class_accuracy'])}%, on {entry['num_examples']} test faces.", '',
           '| class | precision | recall | F1 | support |', '| --- | --- | --- | --- | --- |']
  for cls, s in entry['per_class'].items():
    lines.append(f"| {cls} | {_percent(s['precision'])} | {_percent(s['recall'])} | {_percent(s['f1'])} | "
                 f"{s['support']} |")
  figures = entry['figures']
  lines += ['', f"![counts]({figures['confusion_counts']}) ![rates]({figures['confusion_rates']})", '',
            f"The most confident mistakes (true -> predicted):\n\n![mistakes]({figures['mistakes']})", '']
  return '\n'.join(lines)


def _publish(workdir: str, staging: str, report: dict, markdown: str) -> None:
  """Replaces the workdir's report (figures, then json and md) with the one written in `staging`."""
  figures = os.path.join(workdir, REPORT)
  shutil.rmtree(figures, ignore_errors=True)
  os.replace(staging, figures)
  workdir_lib.write_json(os.path.join(workdir, f'{REPORT}.json'), report)
  workdir_lib.write_text(os.path.join(workdir, f'{REPORT}.md'), markdown)


def report_run(workdir: str, *, data_dir: str | None = None, num_mistakes: int = 16, mesh=None,
               stages: Sequence[str] | None = None) -> dict:
  """Re-evaluates every finished stage of a single-fold workdir (of `stages` only, if given) and writes its
  report; returns the report."""
  config = workdir_lib.load_config(workdir)
  if data_dir:
    config.data_dir = data_dir
  unknown = sorted(set(stages or ()) - set(config.stages))
  if unknown:
    raise errors.ConfigError(f'--stages: {unknown} are not stages of the run in {workdir}',
                             f'name some of {list(config.stages)}, or leave --stages out for all of them')
  data_dir = os.path.abspath(os.path.expanduser(config.data_dir))
  config = budgeted(config, data_dir)
  stages = [s for s in finished_stages(config, workdir) if not stages or s in stages]
  if not stages:
    raise errors.WorkdirError(f'--workdir={workdir}: none of the stages {list(config.stages)} has its final '
                              'checkpoint', 'finish the run first: run the same fn2en_jax.main command again')
  mesh = mesh or parallel.make_mesh()
  staging = os.path.join(workdir, f'.{REPORT}.tmp')
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  entries = {}
  try:
    for name in stages:
      summary, outputs = reevaluate_stage(config, name, workdir, mesh, data_dir)
      entries[name] = stage_report(name, summary, outputs, staging, num_mistakes)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  markdown = '\n'.join([f'# Re-evaluated {workdir}', '', results.results_table(entries), '',
                        *(stage_markdown(name, entry) for name, entry in entries.items())])
  report = {'workdir': workdir, 'stages': entries}
  _publish(workdir, staging, report, markdown)
  return report


def report_kfold(workdir: str, *, data_dir: str | None = None, num_mistakes: int = 16, mesh=None,
                 stages: Sequence[str] | None = None) -> dict:
  """Reports every fold of a k-fold workdir (each in its fold_<i>/), then the mean and standard deviation of each
  method over the folds beside the paper's numbers (the statistics of kfold.py, on the re-evaluated numbers)."""
  path = os.path.join(workdir, workdir_lib.KFOLD_JSON)
  if not os.path.exists(path):
    done = [i for i in workdir_lib.folds(workdir)
            if os.path.exists(os.path.join(workdir_lib.fold_dir(workdir, i), workdir_lib.RESULTS_JSON))]
    raise errors.WorkdirError(f'--workdir={workdir} is a k-fold run that has not finished: {workdir_lib.KFOLD_JSON} is '
                              f'written when every fold has, and the folds finished so far are {done}',
                              'run the same fn2en_jax.main command again to finish it, or evaluate a finished fold '
                              f'alone: --workdir={workdir_lib.fold_dir(workdir, done[0] if done else 0)}')
  with open(path) as f:
    saved = json.load(f)
  config = ml_collections.ConfigDict(saved['config'])
  folds = [report_run(os.path.join(workdir, d), data_dir=data_dir, num_mistakes=num_mistakes, mesh=mesh,
                      stages=stages)['stages'] for d in saved['fold_dirs']]
  paper = config.get('paper')
  report = kfold.summarize(folds, paper.to_dict() if paper is not None else {}, config)
  report['fold_reports'] = [f'{d}/{REPORT}.md' for d in saved['fold_dirs']]
  links = ', '.join(f'[{d}]({d}/{REPORT}.md)' for d in saved['fold_dirs'])
  markdown = (kfold.report_markdown(report) + f'\nRe-evaluated from the final checkpoints in {workdir}. Each '
              f'fold\'s report (per-class scores, confusion matrices, mistakes): {links}.\n')
  workdir_lib.write_json(os.path.join(workdir, f'{REPORT}.json'), report)
  workdir_lib.write_text(os.path.join(workdir, f'{REPORT}.md'), markdown)
  return report


def report(workdir: str, **kwargs) -> dict:
  """`report_kfold` for a k-fold workdir (`workdir.is_kfold`), else `report_run`."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise errors.WorkdirError(f'--workdir={workdir} does not exist',
                              'pass the --workdir of a finished `python -m fn2en_jax.main` run')
  if workdir_lib.is_kfold(workdir):
    return report_kfold(workdir, **kwargs)
  return report_run(workdir, **kwargs)


def define_flags() -> None:
  """The command's flags; defined when it runs, not on import, so that other code can import this module."""
  flags.DEFINE_string('workdir', None, 'A finished workdir of fn2en_jax.main (single-fold or k-fold).', required=True)
  flags.DEFINE_string('data_dir', '', "Where the dataset is, if not the run's config.data_dir.")
  flags.DEFINE_list('stages', [], 'Only these stages (comma-separated); default every finished stage.')
  flags.DEFINE_integer('num_mistakes', 16, 'Faces in the grid of the most confident mistakes, per stage.')


def main(argv) -> None:
  if len(argv) > 1:
    raise errors.ConfigError(f'unexpected arguments: {argv[1:]}', 'pass everything as --flag=value')
  f = flags.FLAGS
  report(f.workdir, data_dir=f.data_dir or None, num_mistakes=f.num_mistakes, stages=f.stages or None)
  print(f'Written to {os.path.join(os.path.abspath(os.path.expanduser(f.workdir)), REPORT + ".md")}', flush=True)


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
