"""The report of a k-fold run: every fold's results, their mean and spread, beside the paper's numbers.

  python -m fn2en_jax.main --config=configs/ck_plus.py --workdir=DIR --config.data.fold=-1 ...

`experiment.run_folds` runs fold i as an ordinary single-fold run (the config with `data.fold=i`) in
DIR/fold_<i>/, which writes its own results.md/json; a fold whose results.json was written by exactly that config
is not run again. Then `write_report` puts DIR/kfold.md and DIR/kfold.json beside them: each fold's accuracy and
mean per-class accuracy for each row (scratch, face fine-tune, FN2EN), their mean and standard deviation, and the
paper's number (`config.paper`, in percent, keyed 'scratch', 'face', 'fn2en').

The face_pretrain stage does not depend on the fold: when config.stages has it, it is trained once in
DIR/face_pretrain, exported as a face net to DIR/face_net (the format of `models/face_nets.py`), and every fold
starts its face stage from there (`teacher.init=DIR/face_net`).

Repeats (the same k-fold run with other seeds) are pooled by

  python -m fn2en_jax.kfold --workdirs=DIR_SEED0,DIR_SEED1,DIR_SEED2 --output=DIR/seeds

which prints, and writes to seeds.md/json, each method's mean and standard deviation over every fold of every run,
the spread of the runs' means (what changing only the seed does), and FN2EN's paired difference from each
baseline on the same fold and seed: the numbers that say whether one method's lead is signal or noise.
"""

from __future__ import annotations

import json
import math
import os
import statistics

import jax
import ml_collections

from fn2en_jax import errors, stages
from fn2en_jax import workdir as workdir_lib

METRICS = ('accuracy', 'mean_per_class_accuracy')
FACE_NET = 'face_net'
REPORT = 'kfold'


def fold_config(config: ml_collections.ConfigDict, fold: int) -> ml_collections.ConfigDict:
  cfg = config.copy_and_resolve_references()
  cfg.data.fold = fold
  return cfg


def as_json(value):
  return json.loads(json.dumps(value))


def finished_summaries(workdir: str, config: ml_collections.ConfigDict) -> dict[str, dict] | None:
  """The stage summaries in the fold's results.json if exactly this config wrote it (else the fold has to run)."""
  path = os.path.join(workdir, workdir_lib.RESULTS_JSON)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  return saved['stages'] if saved['config'] == as_json(config.to_dict()) else None


def validate(config: ml_collections.ConfigDict) -> None:
  unknown = sorted(set(config.paper) - set(stages.paper_keys().values()))
  if unknown:
    raise errors.ConfigError(f'config.paper: unknown row(s) {unknown}; expected some of '
                             f'{sorted(stages.paper_keys().values())}', 'fix the row names in the config file')


def write_report(workdir: str, folds: list[dict[str, dict]], config: ml_collections.ConfigDict) -> dict:
  """Writes kfold.json and kfold.md (process 0 only) and returns the report."""
  report = summarize(folds, config.paper.to_dict(), config)
  if jax.process_index() == 0:
    table = report_markdown(report)
    workdir_lib.write_text(os.path.join(workdir, f'{REPORT}.md'), table)
    workdir_lib.write_json(os.path.join(workdir, workdir_lib.KFOLD_JSON), report)  # last: the run is finished
    print(f'\n{table}\nWritten to {os.path.join(workdir, REPORT + ".md")}', flush=True)
  return report


def protocol_name(config: ml_collections.ConfigDict) -> str:
  data = config.data
  dataset = f'{data.name}/{data.config}' if data.config else data.name
  if data.protocol == 'tfd_folds':
    train = 'train + valid' if data.tfd_valid_in_train else 'train'
    return f"{dataset}, TFD's {data.num_folds} official folds (trained on {train}, tested on test)"
  extra = f', extra training data {list(data.extra_train)}' if data.extra_train else ''
  if data.protocol == 'leave_one_subject_out':
    return f'{dataset}, leave one subject out ({data.num_folds} subjects){extra}'
  return f'{dataset}, {data.num_folds} subject-independent folds{extra}'


def summarize(folds: list[dict[str, dict]], paper: dict[str, float], config: ml_collections.ConfigDict) -> dict:
  """Per row: each fold's metrics, their mean and sample standard deviation, and the paper's accuracy (or None),
  all as fractions like results.json."""
  rows = {}
  for name, stage in stages.rows():
    if stage not in folds[0]:
      continue
    in_paper = paper.get(stages.paper_keys()[stage])  # percent, as printed in the paper
    row = {'stage': stage, 'paper_accuracy': None if in_paper is None else in_paper / 100}
    for metric in METRICS:
      values = [f[stage][metric] for f in folds]
      row[metric] = values
      row[f'{metric}_mean'] = statistics.fmean(values)
      row[f'{metric}_std'] = statistics.stdev(values) if len(values) > 1 else 0.0
    row['num_examples'] = [f[stage]['num_examples'] for f in folds]
    rows[name] = row
  return {'protocol': protocol_name(config), 'num_folds': len(folds), 'rows': rows,
          'fold_dirs': [f'fold_{i}' for i in range(len(folds))], 'config': config.to_dict()}


def _percent(value: float) -> str:
  return f'{100 * value:.2f}'


def report_markdown(report: dict) -> str:
  folds = range(report['num_folds'])
  lines = [f"# {report['protocol']}", '']
  for metric, title in (('accuracy', 'Accuracy'), ('mean_per_class_accuracy', 'Mean per-class accuracy')):
    lines += [f'{title} (%) on each fold\'s test set:', '',
              '| method | ' + ' | '.join(f'fold {i}' for i in folds) + ' | mean | std |'
              + (' paper |' if metric == 'accuracy' else ''),
              '| --- ' * (len(folds) + 3 + (metric == 'accuracy')) + '|']
    for name, row in report['rows'].items():
      cells = [_percent(v) for v in row[metric]] + [_percent(row[f'{metric}_mean']), _percent(row[f'{metric}_std'])]
      if metric == 'accuracy':
        cells.append('n/a' if row['paper_accuracy'] is None else _percent(row['paper_accuracy']))
      lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  sizes = next(iter(report['rows'].values()))['num_examples'] if report['rows'] else []
  lines += [f'Test examples per fold: {", ".join(str(n) for n in sizes)}. std: the sample standard deviation over '
            'the folds. paper: Ding, Zhou, Chellappa, FaceNet2ExpNet (FG 2017), its average accuracy (n/a: not '
            'reported). Each fold\'s own results, confusion matrices and logs are in ' + ', '.join(report['fold_dirs'])
            + '.', '']
  return '\n'.join(lines)


def load_report(workdir: str) -> dict:
  path = os.path.join(os.path.expanduser(workdir), f'{REPORT}.json')
  if not os.path.exists(path):
    raise errors.MissingInput(f'{path} does not exist: {workdir} is not a finished k-fold run',
                              'pass the --workdir of runs made with --config.data.fold=-1, after they finished')
  with open(path) as f:
    return json.load(f)


def pool(reports: list[dict]) -> dict:
  """Several k-fold reports of one protocol (repeats with other seeds) as one: per row, the metrics of every fold of
  every run, their mean and sample standard deviation, each run's mean and the standard deviation of those means;
  and per baseline, FN2EN's difference from it on the same fold of the same run."""
  protocols = {r['protocol'] for r in reports}
  if len(protocols) > 1:
    raise errors.InputError(f'the runs use different protocols: {sorted(protocols)}',
                            'pool only repeats of one k-fold run (the same config with other seeds)')
  rows = {}
  for name in reports[0]['rows']:
    row = {}
    for metric in METRICS:
      per_run = [r['rows'][name][metric] for r in reports]
      values = [v for run in per_run for v in run]
      run_means = [statistics.fmean(run) for run in per_run]
      row[metric] = {'mean': statistics.fmean(values), 'std': statistics.stdev(values), 'n': len(values),
                     'run_means': run_means,
                     'std_of_run_means': statistics.stdev(run_means) if len(run_means) > 1 else 0.0}
    rows[name] = row
  fn2en = next((n for n in reports[0]['rows'] if reports[0]['rows'][n]['stage'] == 'b'), None)
  differences = {}
  for name in rows:
    if fn2en is None or name == fn2en:
      continue
    diffs = [a - b for r in reports for a, b in zip(r['rows'][fn2en]['accuracy'], r['rows'][name]['accuracy'])]
    std = statistics.stdev(diffs)
    differences[name] = {'mean': statistics.fmean(diffs), 'std': std, 'sem': std / math.sqrt(len(diffs)),
                         'wins': sum(d > 0 for d in diffs), 'ties': sum(d == 0 for d in diffs), 'n': len(diffs)}
  return {'protocol': reports[0]['protocol'], 'runs': len(reports), 'folds_per_run': reports[0]['num_folds'],
          'seeds': [r['config'].get('seed') for r in reports], 'rows': rows, 'fn2en_minus': differences}


def pooled_markdown(pooled: dict) -> str:
  n = pooled['runs'] * pooled['folds_per_run']
  lines = [f"# {pooled['protocol']}: {pooled['runs']} runs (seeds {pooled['seeds']}) x {pooled['folds_per_run']} "
           'folds', '',
           f'| method | accuracy, mean +- std over the {n} | mean per-class accuracy | each run\'s mean accuracy | '
           'std of the runs\' means |', '| --- | --- | --- | --- | --- |']
  for name, row in pooled['rows'].items():
    acc, mpca = row['accuracy'], row['mean_per_class_accuracy']
    lines.append(f"| {name} | {_percent(acc['mean'])} +- {_percent(acc['std'])} | {_percent(mpca['mean'])} +- "
                 f"{_percent(mpca['std'])} | {', '.join(_percent(m) for m in acc['run_means'])} | "
                 f"{_percent(acc['std_of_run_means'])} |")
  if pooled['fn2en_minus']:
    lines += ['', 'FN2EN minus each baseline, accuracy on the same fold of the same run (points):', '',
              '| baseline | mean difference | std | std / sqrt(n) | FN2EN ahead on |', '| --- | --- | --- | --- | --- |']
    for name, d in pooled['fn2en_minus'].items():
      lines.append(f"| {name} | {100 * d['mean']:+.2f} | {100 * d['std']:.2f} | {100 * d['sem']:.2f} | "
                   f"{d['wins']} of {d['n']} ({d['ties']} ties) |")
    lines += ['', 'std / sqrt(n) treats the fold-and-seed pairs as independent; the runs share their test folds, so '
              'it understates the uncertainty: compare the difference with the std of the runs\' means too.']
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  # `python -m fn2en_jax.kfold`: the command is fn2en_jax/commands/kfold.py, run by its name so that the library
  # imports nothing of the commands.
  import runpy  # pylint: disable=g-import-not-at-top
  runpy.run_module('fn2en_jax.commands.kfold', run_name='__main__', alter_sys=True)
