"""The linear probe of any layer of a face net's frozen features, on a config's validation subjects.

  python benchmarks/linear_probe.py --config=configs/ck_plus_48_dlib.py \
      --config.data.manual_dir=$HOME/data/CK+48 --config.teacher.init=$HOME/face_nets/dlib_resnet [--tap=res4]

The face stage fits this probe on the classifier's input before fine-tuning (`stage_face.linear_probe`, its record
in the stage's summary); this script asks the same of another tap (`stages/linear_probe.py`, the same code): the
config's fold, training and validation subjects (`pipeline.splits`), a logistic regression per L2 strength of
`stage_face.linear_probe_l2`, each one's validation accuracy printed. The test fold is not read.
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

_CONFIG = config_flags.DEFINE_config_file('config', None, 'An experiment config (configs/*.py).')
_TAP = flags.DEFINE_string('tap', 'embedding', 'The face net layer whose features are probed (flattened).')


def main(argv):
  del argv
  config = _CONFIG.value
  splits = pipeline.splits(config.data, os.path.abspath(os.path.expanduser(config.data_dir)))
  module, variables, _ = face_nets.load(config.teacher.init)
  apply_fn = jax.jit(functools.partial(module.apply, train=False, tap=_TAP.value))
  hp = config.stage_face
  _, record = linear_probe.probe(apply_fn, variables, splits, config.data, l2s=hp.linear_probe_l2,
                                 steps=hp.linear_probe_steps)
  print(json.dumps({'tap': _TAP.value, **record}, indent=2))


if __name__ == '__main__':
  app.run(main)
