"""benchmarks/linear_probe.py on a finished run: the nets it probes are the stages' chosen checkpoints, read strictly."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fn2en_jax import errors
from fn2en_jax.stages import linear_probe
from fn2en_jax.train import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raw_chosen_params(stage_dir):
  """Every parameter of a stage's chosen checkpoint, read by Orbax without a target (an independent read)."""
  with ocp.PyTreeCheckpointer() as checkpointer:
    return checkpointer.restore(checkpoint.trained_state_path(stage_dir))['params']


def _assert_read_from(tree, raw):
  """Every leaf of `tree` equals the leaf at the same path of `raw`: the same checkpoint, so bitwise."""
  for path, leaf in jax.tree.leaves_with_path(tree):
    node = raw
    for key in path:
      node = node[key.key]
    np.testing.assert_array_equal(np.asarray(leaf), np.asarray(node))


def test_stage_a_probes_the_student_trunk_of_its_chosen_checkpoint(tiny_run):
  workdir = str(tiny_run[0])
  config, apply_fn, variables, tap = linear_probe.trained_net(workdir, 'a', None)
  assert tap == 'pool5' and set(variables['params']) == {'trunk'}  # the adapter stays behind, as in stage b
  raw = _raw_chosen_params(os.path.join(workdir, 'a'))
  _assert_read_from(variables['params']['trunk'], raw['trunk'])
  images = np.zeros((2, config.data.image_size, config.data.image_size, 3), np.float32)
  pool5 = apply_fn(variables, images)
  assert pool5.shape[0] == 2 and pool5.shape[-1] == config.student.widths[-1]


def test_face_stage_probes_its_teacher_tap_by_default(tiny_run):
  workdir = str(tiny_run[0])
  config, apply_fn, variables, tap = linear_probe.trained_net(workdir, 'face', None)
  assert tap == config.teacher.tap
  raw = _raw_chosen_params(os.path.join(workdir, 'face'))
  assert set(variables['params']) < set(raw)  # the layers up to the tap, not the classifier after it
  _assert_read_from(variables['params'], raw)


def test_bad_requests_fail_with_a_remedy(tiny_run, tmp_path):
  workdir = str(tiny_run[0])
  with pytest.raises(errors.ConfigError, match='pool5'):
    linear_probe.trained_net(workdir, 'a', 'res4')
  partial = tmp_path / 'partial'
  partial.mkdir()
  shutil.copy(os.path.join(workdir, 'config.json'), partial / 'config.json')
  with pytest.raises(errors.WorkdirError, match='has not finished'):
    linear_probe.trained_net(str(partial), 'a', None)


def test_command_line_prints_a_validation_accuracy_per_l2(tiny_run):
  done = subprocess.run([sys.executable, 'benchmarks/linear_probe.py', f'--workdir={tiny_run[0]}', '--stage=a'],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  record = json.loads(done.stdout[done.stdout.index('{'):])
  config = json.load(open(os.path.join(tiny_run[0], 'config.json')))
  assert record['tap'] == 'pool5' and record['stage'] == 'a'
  assert set(map(float, record['validation_accuracy'])) == set(config['stage_face']['linear_probe_l2'])
  assert all(0.0 <= v <= 1.0 for v in record['validation_accuracy'].values())
  assert record['l2'] in config['stage_face']['linear_probe_l2']
