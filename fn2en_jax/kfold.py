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
"""

from __future__ import annotations

import json
import os
import statistics
import jax
import ml_collections

from fn2en_jax import errors, results

# The paper's name for each results row, by the stage that fills it (results.ROWS).
PAPER_KEYS = {'scratch': 'scratch', 'face': 'face', 'b': 'fn2en'}
METRICS = ('accuracy', 'mean_per_class_accuracy')
FACE_NET = 'face_net'
REPORT = 'kfold'


def fold_dir(workdir: str, fold: int) -> str:
  return os.path.join(workdir, f'fold_{fold}')


def fold_config(config: ml_collections.ConfigDict, fold: int) -> ml_collections.ConfigDict:
  cfg = config.copy_and_resolve_references()
  cfg.data.fold = fold
  return cfg


def as_json(value):
  return json.loads(json.dumps(value))


def finished_summaries(workdir: str, config: ml_collections.ConfigDict) -> dict[str, dict] | None:
  """The stage summaries in the fold's results.json if exactly this config wrote it (else the fold has to run)."""
  path = os.path.join(workdir, 'results.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  return saved['stages'] if saved['config'] == as_json(config.to_dict()) else None


def validate(config: ml_collections.ConfigDict) -> None:
  unknown = sorted(set(config.paper) - set(PAPER_KEYS.values()))
  if unknown:
    raise errors.ConfigError(f'config.paper: unknown row(s) {unknown}; expected some of '
                             f'{sorted(PAPER_KEYS.values())}', 'fix the row names in the config file')


def write_report(workdir: str, folds: list[dict[str, dict]], config: ml_collections.ConfigDict) -> dict:
  """Writes kfold.json and kfold.md (process 0 only) and returns the report."""
  report = summarize(folds, config.paper.to_dict(), config)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, f'{REPORT}.json'), 'w') as f:
      json.dump(report, f, indent=2)
    table = report_markdown(report)
    with open(os.path.join(workdir, f'{REPORT}.md'), 'w') as f:
      f.write(table)
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
  for name, stage in results.ROWS:
    if stage not in folds[0]:
      continue
    in_paper = paper.get(PAPER_KEYS[stage])  # percent, as printed in the paper
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
