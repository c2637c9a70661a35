"""Runs the FaceNet2ExpNet stages of a config in order and writes the results table.

  python -m fn2en_jax.main --config=configs/demo.py --workdir=/tmp/fn2en_demo
  python -m fn2en_jax.main --config=configs/sfew.py --workdir=... --config.stage_a.learning_rate=0.01

A stage whose final checkpoint exists in <workdir>/<stage>/ is not trained again, only evaluated.
"""

from __future__ import annotations

import json
import logging as logging_lib
import os
import time

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from fn2en_jax import evaluate, kfold
from fn2en_jax.data import folds, pipeline
from fn2en_jax.models import face_nets
from fn2en_jax.stages import a, b, common, face, face_pretrain, scratch
from fn2en_jax.train import loop, parallel

STAGES = {m.NAME: m for m in (face_pretrain, face, a, b, scratch)}
# A stage reads the final checkpoint of the stage named here, from this workdir.
NEEDS = {'face': 'face_pretrain', 'a': 'face', 'b': 'a'}
SUMMARY = 'summary.json'

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, TensorBoard logs and results go here.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, 'Multi-host (TPU pod, SLURM GPU cluster): join the other '
                                 'processes with jax.distributed.initialize() before using any device.')


def stage_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  return config[f'stage_{name}']


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field, instead of minutes into a run."""
  stages = tuple(config.stages)
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f'config.stages: unknown stage(s) {unknown}; expected some of {list(STAGES)}')
  if len(set(stages)) != len(stages):
    raise ValueError(f'config.stages lists a stage twice: {stages}')
  for stage, needed in NEEDS.items():
    if stage in stages and needed in stages and stages.index(needed) > stages.index(stage):
      raise ValueError(f'config.stages: {stage!r} reads the checkpoint of {needed!r}, so it must come after it')
  common.dtype(config)
  for name in stages:
    hp = stage_config(config, name)
    for field in ('num_steps', 'batch_size', 'log_every', 'eval_every', 'checkpoint_every'):
      if hp[field] < 1:
        raise ValueError(f'config.stage_{name}.{field} must be >= 1, got {hp[field]}')
    if hp.batch_size % jax.device_count():
      raise ValueError(f'config.stage_{name}.batch_size={hp.batch_size} must be divisible by the '
                       f'{jax.device_count()} devices')
  if 'a' in stages and config.stage_a.p not in (1, 2):
    raise ValueError(f'config.stage_a.p must be 1 or 2, got {config.stage_a.p}')
  data = config.data
  if data.protocol not in pipeline.PROTOCOLS:
    raise ValueError(f'config.data.protocol must be one of {pipeline.PROTOCOLS}, got {data.protocol!r}')
  if data.eval_split:
    if data.protocol != 'subject_folds':
      raise ValueError(f'config.data.eval_split={data.eval_split!r} is the test set, so data.protocol='
                       f'{data.protocol!r} (which picks a test fold) cannot apply: set one of them')
    if data.fold == -1:
      raise ValueError(f'config.data.fold=-1 runs every fold, but data.eval_split={data.eval_split!r} is one '
                       'official test split: set data.fold=0')
  else:
    if data.num_folds < 2:
      raise ValueError(f'config.data.num_folds must be >= 2, got {data.num_folds}')
    if not -1 <= data.fold < data.num_folds:
      raise ValueError(f'config.data.fold must be in [0, {data.num_folds}), or -1 for every fold, got {data.fold}')
    if data.protocol == 'tfd_folds' and data.num_folds != folds.TFD_NUM_FOLDS:
      raise ValueError(f"config.data.num_folds must be {folds.TFD_NUM_FOLDS} with protocol='tfd_folds' (TFD's "
                       f'official folds), got {data.num_folds}')
  for entry in data.extra_train:
    pipeline.parse_dataset_split(entry)
  for name in ('data', 'face_data'):
    if config[name].crop_scale < 1:
      raise ValueError(f'config.{name}.crop_scale must be >= 1, got {config[name].crop_scale}')
  if 'face' in stages and config.teacher.init is None and 'face_pretrain' not in stages:
    raise ValueError(
        'config.teacher.init: stage face fine-tunes a pretrained face net, and this config needs one. Convert '
        'VGG-Face (docs/face_nets.md): `python -m fn2en_jax.convert vgg_face --input=vgg_face_dag.pth '
        '--output=$HOME/face_nets/vgg_face`, then add --config.teacher.init=$HOME/face_nets/vgg_face; or train one '
        'on an identity dataset by adding face_pretrain to config.stages and naming it in config.face_data')
  if config.teacher.init:
    face_nets.read_meta(config.teacher.init)
  if 'face_pretrain' in stages and not config.face_data.name:
    raise ValueError('config.face_data.name: stage face_pretrain trains a face net to recognise identities; name '
                     'a dataset of them (a TFDS builder whose labels are identities)')


def run_stage(config, name: str, workdir: str, mesh, data_dir: str) -> dict:
  """Trains (or, when finished before, only evaluates) one stage; records its wall time on first completion."""
  hp = stage_config(config, name)
  finished = loop.is_finished(workdir, name, hp.num_steps)
  started = time.time()
  summary = loop.run(STAGES[name].setup(config, workdir, mesh, data_dir), workdir=workdir, mesh=mesh,
                     seed=config.seed)
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


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
  validate(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  data_dir = os.path.abspath(os.path.expanduser(config.data_dir))
  os.makedirs(workdir, exist_ok=True)
  if config.compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(config.compilation_cache_dir))
  if config.data.fold == -1:
    return kfold.run(config, workdir, run_fold=run, run_stage=run_stage)
  mesh = parallel.make_mesh()
  summaries = {name: run_stage(config, name, workdir, mesh, data_dir) for name in config.stages}
  if jax.process_index() == 0:
    table = evaluate.write_results(workdir, summaries, config.to_dict(), describe_test_set(config.data))
    print(f'\n{table}\n\nWritten to {os.path.join(workdir, "results.md")}', flush=True)
  return summaries


class _QuietLibraries(logging_lib.Filter):
  """Orbax logs every step of every save at INFO; the loop's own progress lines are what a user wants to read."""

  def filter(self, record: logging_lib.LogRecord) -> bool:
    return record.levelno >= logging_lib.WARNING or '/orbax/' not in record.pathname


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _WORKDIR.value is None:
    raise app.UsageError('--workdir is required')
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
