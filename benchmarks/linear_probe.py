"""The linear probe of a net's frozen features on a config's validation subjects: a converted face net at any tap,
or what a finished run trained (the fine-tuned face net, or the student's trunk after stage a).

  python benchmarks/linear_probe.py --config=configs/ck_plus_48_dlib.py \
      --config.data.manual_dir=$HOME/data/CK+48 --config.teacher.init=$HOME/face_nets/dlib_resnet [--tap=res4]
  python benchmarks/linear_probe.py --workdir=$HOME/runs/ck48/fold_0 --stage=face --tap=res4
  python benchmarks/linear_probe.py --workdir=$HOME/runs/ck48/fold_0 --stage=a

The face stage fits this probe on the classifier's input before fine-tuning (`stage_face.linear_probe`, its record
in the stage's summary); this script asks the same of another tap (`stages/linear_probe.py`, the same code): the
config's fold, training and validation subjects (`pipeline.splits`), a logistic regression per L2 strength of
`stage_face.linear_probe_l2`, each one's validation accuracy printed. The test fold is not read.

With `--workdir` it reads that run's config.json and the chosen checkpoint (the best on validation) of `--stage`:
`face`, the fine-tuned face net at `--tap`; `a`, the student's pool5 (its conv trunk, the adapter left out). This
is how far stage a's student got in mimicking its teacher: probe `--stage=face --tap=<config.teacher.tap>` beside
`--stage=a` (FN2EN's stage b starts from the second; its fresh head can at best find what a probe finds).
"""

from __future__ import annotations

import functools
import json
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets
from fn2en_jax.stages import linear_probe

_CONFIG = config_flags.DEFINE_config_file('config', None, 'An experiment config (configs/*.py); not with --workdir.')
_TAP = flags.DEFINE_string('tap', None, 'The face net layer whose features are probed (flattened); default '
                           'embedding (a converted net) or the run\'s teacher.tap (--stage=face).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A finished single-fold run (or a fold_<i> folder of a k-fold one).')
_STAGE = flags.DEFINE_enum('stage', 'face', ('face', 'a'), 'With --workdir: the stage whose trained net is probed.')


def main(argv):
  del argv
  if bool(_WORKDIR.value) == bool(_CONFIG.value):
    raise app.UsageError('pass --config (a converted face net) or --workdir (a finished run), one of them')
  if _WORKDIR.value:
    workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
    config, apply_fn, variables, tap = linear_probe.trained_net(workdir, _STAGE.value, _TAP.value)
  else:
    config, tap = _CONFIG.value, _TAP.value or 'embedding'
    module, variables, _ = face_nets.load(config.teacher.init)
    apply_fn = jax.jit(functools.partial(module.apply, train=False, tap=tap))
  splits = pipeline.splits(config.data, os.path.abspath(os.path.expanduser(config.data_dir)))
  hp = config.stage_face
  _, record = linear_probe.probe(apply_fn, variables, splits, config.data, l2s=hp.linear_probe_l2,
                                 steps=hp.linear_probe_steps)
  print(json.dumps({'tap': tap, 'stage': _STAGE.value if _WORKDIR.value else None, **record}, indent=2))


if __name__ == '__main__':
  app.run(main)
