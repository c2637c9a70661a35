"""An experiment: the stages of a config run in order in a workdir, then the results table. Importable from a
colab; `main.py` is its command line.

A stage whose final checkpoint exists in <workdir>/<stage>/ is not trained again, only evaluated. With
`config.data.fold=-1` every fold runs in <workdir>/fold_<i>/ and `kfold` reports their mean and spread.
"""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
from absl import logging

from fn2en_jax import errors, kfold, models, results
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets
from fn2en_jax.stages import STAGES, Context, budgeted, face_pretrain, order_errors
from fn2en_jax.train import loop, parallel, preemption, state

SUMMARY = 'summary.json'


def stage_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  return config[f'stage_{name}']


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field, instead of minutes into a run: every section is checked by the module that
  reads it."""
  stages = tuple(config.stages)
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise errors.ConfigError(f'config.stages: unknown stage(s) {unknown}; expected some of {list(STAGES)}',
                             "e.g. --config.stages=\"('face','a','b','scratch')\"")
  if len(set(stages)) != len(stages):
    raise errors.ConfigError(f'config.stages lists a stage twice: {stages}', 'list each stage once')
  wrong_order = order_errors(stages)
  if wrong_order:
    raise errors.ConfigError(f'config.stages: {wrong_order[0]}', f'reorder config.stages (now {stages})')
  models.validate(config)
  face_nets.validate(config)
  pipeline.validate(config.data, 'data')
  pipeline.validate_protocol(config.data)
  kfold.validate(config)
  for name in stages:
    state.validate(stage_config(config, name), f'stage_{name}', jax.device_count())
    if hasattr(STAGES[name], 'validate'):
      STAGES[name].validate(config)


def with_budgets(config: ml_collections.ConfigDict, data_dir: str) -> ml_collections.ConfigDict:
  """`config` with every stage's steps derived from its epochs on this run's training set, checked again (a
  budget in epochs is only a number of steps once the fold's size is known)."""
  trained = budgeted(config, data_dir)
  for name in trained.stages:
    state.validate(stage_config(trained, name), f'stage_{name}', jax.device_count())
  return trained


def run_stage(config: ml_collections.ConfigDict, name: str, workdir: str, mesh, data_dir: str) -> dict:
  """Trains (or, when finished before, only evaluates) one stage of a `budgeted` config; records its wall time on
  first completion."""
  hp = stage_config(config, name)
  finished = loop.is_finished(workdir, name, hp)
  started = time.time()
  ctx = Context(name=name, workdir=workdir, data_dir=data_dir, mesh=mesh, seed=config.seed)
  summary = loop.run(STAGES[name].setup(config, ctx), workdir=workdir, mesh=mesh, seed=config.seed)
  path = os.path.join(workdir, name, SUMMARY)
  if finished and os.path.exists(path):
    with open(path) as f:
      summary['wall_time_s'] = json.load(f)['wall_time_s']
  else:
    summary['wall_time_s'] = time.time() - started
    if jax.process_index() == 0:
      with open(path, 'w') as f:
        json.dump(summary, f, indent=2)
  logging.info('%s: %s in %.1f s', name, {k: v for k, v in summary.items() if isinstance(v, float)},
               summary['wall_time_s'])
  return summary


def describe_test_set(data: ml_collections.ConfigDict) -> str:
  """What the table's numbers were measured on, in words (and what was trained on beside the dataset's own)."""
  if data.eval_split:
    test = f"the '{data.eval_split}' split of {data.name}"
  elif data.protocol == 'tfd_folds':
    test = f"the test part of {data.name}'s official fold {data.fold}"
  else:
    test = f'the held-out subjects of {data.name} (subject fold {data.fold} of {data.num_folds})'
  if data.extra_train:
    test += f", training with extra data from {', '.join(data.extra_train)}"
  return test


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """<workdir>/config.json: what a later command (predict, export, evaluate, a resumed run) reads back."""
  if jax.process_index() == 0:
    # Atomic: the other hosts, reading it to check a resume, never see it half-written.
    workdir_lib.write_text(os.path.join(workdir, workdir_lib.CONFIG_JSON), config.to_json_best_effort(indent=2))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs `config` in `workdir`: its stages in order, or every fold (data.fold=-1). Returns the stage summaries
  (or, for every fold, the k-fold report)."""
  validate(config)
  preemption.watch()  # from here on, SIGTERM stops the run at the next step boundary, with a checkpoint
  workdir = os.path.abspath(os.path.expanduser(workdir))
  workdir_lib.check(workdir, config)
  if config.compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(config.compilation_cache_dir))
  if config.data.fold == -1:
    _write_config(config, workdir)
    return run_folds(config, workdir)
  return run_fold(config, workdir)


def run_fold(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
  """The stages of a single-fold config, then results.md/json."""
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.check_resume(workdir, config)
  _write_config(config, workdir)
  data_dir = os.path.abspath(os.path.expanduser(config.data_dir))
  mesh = parallel.make_mesh()
  trained = with_budgets(config, data_dir)
  summaries = {name: run_stage(trained, name, workdir, mesh, data_dir) for name in config.stages}
  if jax.process_index() == 0:
    table = results.write_results(workdir, summaries, config.to_dict(), describe_test_set(config.data))
    print(f'\n{table}\n\nWritten to {os.path.join(workdir, "results.md")}', flush=True)
  return summaries


def pretrain_face_net(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Trains face_pretrain once for all folds (or finds it trained) and returns the exported face net's path."""
  output = os.path.join(workdir, kfold.FACE_NET)
  data_dir = os.path.abspath(os.path.expanduser(config.data_dir))
  config = with_budgets(config, data_dir)
  finished = loop.is_finished(workdir, 'face_pretrain', config.stage_face_pretrain)
  if finished and os.path.exists(os.path.join(output, face_nets.META)):
    return output
  mesh = parallel.make_mesh()
  run_stage(config, 'face_pretrain', workdir, mesh, data_dir)
  # Every process takes part: Orbax reads and writes are collective on multi-host runs.
  face_pretrain.export_trained(config.teacher, os.path.join(workdir, 'face_pretrain'), output,
                               config.face_data.image_size, models.dtype(config), mesh)
  logging.info('face_pretrain: exported the face net for every fold to %s', output)
  return output


def run_folds(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Folds 0 .. data.num_folds-1, each in its own directory (skipped when finished), then kfold.md/json."""
  base = config.copy_and_resolve_references()
  if 'face_pretrain' in base.stages:
    base.teacher.init = pretrain_face_net(base, workdir)
    base.stages = tuple(s for s in base.stages if s != 'face_pretrain')
  folds = []
  for fold in range(base.data.num_folds):
    cfg, directory = kfold.fold_config(base, fold), workdir_lib.fold_dir(workdir, fold)
    summaries = kfold.finished_summaries(directory, cfg)
    if summaries is None:
      logging.info('fold %d of %d: running in %s', fold, base.data.num_folds, directory)
      summaries = kfold.as_json(run_fold(cfg, directory))
    else:
      logging.info('fold %d of %d: finished before, read from %s', fold, base.data.num_folds, directory)
    folds.append(summaries)
  return kfold.write_report(workdir, folds, base)
