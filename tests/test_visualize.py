"""The neuron visualisation on the tiny run: the top faces are the top faces by an independent NumPy computation over
the full models' own taps, and gradient ascent makes inputs that excite their neurons far beyond the starting noise
and beyond every evaluation face."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import roundoff

from conftest import REPO
from fn2en_jax import errors, models
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.commands import visualize
from fn2en_jax.data import pipeline
from fn2en_jax.models import expnet, face_nets
from fn2en_jax.train import checkpoint

ASCENT = visualize.Ascent(steps=100)


@pytest.fixture(scope='module')
def shown(tiny_run, tmp_path_factory):
  workdir, data_dir, _ = tiny_run
  output = tmp_path_factory.mktemp('neurons')
  result = visualize.visualize(str(workdir), str(output), layer='pool5', num_neurons=2, top_k=3, ascent=ASCENT,
                               data_dir=str(data_dir))
  return workdir, data_dir, output, result


def _eval_images(workdir, data_dir):
  config = workdir_lib.load_config(str(workdir))
  test = pipeline.splits(config.data, str(data_dir)).test
  return config, pipeline.eval_arrays(test, config.data)['image']


def _pool2x2(x):
  n, h, w, c = x.shape
  return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _assert_ranked(order, values, tolerance, err_msg=''):
  """`order` (the first indices of a ranking, highest first, that another computation of `values` made) ranks
  `values` as they are, but for values within `tolerance` of each other: no value ranked later, or left out, is
  above one ranked before it by more. Where the gaps exceed the tolerance, that is one ranking only."""
  for i, index in enumerate(order):
    later = np.delete(values, order[:i + 1])
    assert values[index] >= np.max(later, initial=-np.inf) - tolerance, (err_msg, i, order, values)


def _check_neurons(net, scores, tolerance):
  """`net` (the JSON of one net) against `scores` (faces x channels), computed here by another program: the two
  computations of a score are within `tolerance` of each other."""
  # The channels' means over the faces, each computed in float32 by NumPy from scores `tolerance` apart: within
  # that, plus the rounding of the two means (a sum of n terms and a division: gamma(n + 1) of the largest score).
  key = scores.mean(axis=0)
  _assert_ranked([e['channel'] for e in net['neurons']], key,
                 2 * (tolerance + 2 * roundoff.gamma(len(scores) + 1) * np.max(np.abs(scores))), 'channels')
  assert net['num_channels'] == scores.shape[1]
  for entry in net['neurons']:
    column = scores[:, entry['channel']]
    _assert_ranked(entry['top_faces'], column, 2 * tolerance, f"channel {entry['channel']}'s top faces")
    assert len(entry['top_faces']) == 3
    roundoff.assert_within(entry['top_face_activations'], column[entry['top_faces']], tolerance)
    top = np.argsort(-column, kind='stable')[:3]
    assert np.all(column[top][-1] >= np.delete(column, top))  # no face left out beats the ones shown


def _score_tolerance(layer_fn, variables, images):
  """How far apart two float32 computations of every face's spatially averaged activation of every channel may be
  (tests/roundoff.py: twice the bound on either's error), checked to be far below the scores' differences that
  the ranking assertions are about."""
  scores, error = roundoff.bound(lambda v, x: layer_fn(v, x).mean(axis=(1, 2)), variables, images)
  assert 2 * error < 1e-2 * np.max(np.abs(scores)), error
  return 2 * error


def test_top_faces_are_the_top_faces_of_each_models_own_tap(shown):
  """The visualisation scores the faces with `visualize.channel_scores` (jitted, in batches of 64); here, the whole
  models run op by op on all the faces and NumPy averages: the same sums in other orders, compared within the bound
  of tests/roundoff.py. Rankings are compared up to faces or channels whose scores are closer than that."""
  workdir, data_dir, _, result = shown
  config, images = _eval_images(workdir, data_dir)
  student_net, teacher_net = result['nets'].values()
  student = expnet.from_config(config, 8)
  variables = checkpoint.trained_variables(student, config.data.image_size, os.path.join(workdir, 'b'))
  pool5 = np.asarray(student.apply(variables, images, train=False, tap='pool5'))  # the whole ExpNet, its own tap
  _check_neurons(student_net, pool5.mean(axis=(1, 2)),
                 _score_tolerance(visualize.student_layer_fn(student, 'pool5'), variables, images))
  teacher = face_nets.build(config.teacher, 8, models.dtype(config))
  variables = checkpoint.trained_variables(teacher, config.data.image_size, os.path.join(workdir, 'face'))
  tap = np.asarray(teacher.apply(variables, images, train=False, tap=config.teacher.tap))
  _check_neurons(teacher_net, tap.mean(axis=(1, 2)),
                 _score_tolerance(visualize.teacher_layer_fn(teacher, config.teacher.tap), variables, images))


def test_a_conv_block_of_the_student_is_that_block_of_the_whole_net(tiny_run):
  workdir, data_dir, _ = tiny_run
  config, images = _eval_images(workdir, data_dir)
  student = expnet.from_config(config, 8)
  variables = checkpoint.trained_variables(student, config.data.image_size, os.path.join(workdir, 'b'))
  got = np.asarray(visualize.student_layer_fn(student, 'pool3')(variables, images))
  # Block 3 of the whole net: its BatchNorm output (captured by Flax), then ReLU and 2x2 max pooling here.
  _, state = student.apply(variables, images, train=False, tap='pool5', capture_intermediates=True,
                           mutable=['intermediates'])
  bn3 = np.asarray(state['intermediates']['trunk']['bn3']['__call__'][0])
  # Both run op by op, the same operations on the same arrays up to BatchNorm 3, and ReLU and max pooling do not
  # round: the same numbers, exactly.
  np.testing.assert_array_equal(got, _pool2x2(np.maximum(bn3, 0)))
  assert got.shape[-1] == config.student.widths[2]


def test_gradient_ascent_excites_each_neuron_far_beyond_its_start_and_every_face(shown):
  _, _, _, result = shown
  ratios = []
  for net in result['nets'].values():
    for entry in net['neurons']:
      start, synthesised = entry['activation_of_start'], entry['activation_of_synthesised']
      ratios.append(synthesised / max(start, 1e-6))
      # Measured on this run (100 steps): 4.1x to 660x the starting noise on the student, 9x to 12x on the teacher.
      assert synthesised > 3 * start and synthesised - start > 1.0, entry
      assert synthesised > 2 * max(entry['top_face_activations']), entry
  assert np.median(ratios) > 5


def test_the_synthesised_inputs_are_what_the_json_measured(shown, tiny_run):
  workdir, data_dir, output, result = shown
  config, images = _eval_images(workdir, data_dir)
  synthesised = np.load(output / 'neurons_pool5_pool5_synthesised.npz')['net0']
  assert synthesised.shape == (2, *images.shape[1:]) and synthesised.min() >= -1 and synthesised.max() <= 1
  student = expnet.from_config(config, 8)
  variables = checkpoint.trained_variables(student, config.data.image_size, os.path.join(workdir, 'b'))
  maps = np.asarray(student.apply(variables, synthesised, train=False, tap='pool5'))
  # The JSON's activation is the jitted objective on one image; here, the whole net op by op on both and NumPy's
  # mean: the same sums in other orders, within twice the bound of tests/roundoff.py on either.
  tolerance = _score_tolerance(visualize.student_layer_fn(student, 'pool5'), variables, synthesised)
  for i, entry in enumerate(next(iter(result['nets'].values()))['neurons']):
    roundoff.assert_within(maps[i, :, :, entry['channel']].mean(), entry['activation_of_synthesised'], tolerance)
  assert (output / 'neurons_pool5_pool5.png').stat().st_size > 10_000
  assert json.loads((output / 'neurons_pool5_pool5.json').read_text())['nets'] == result['nets']
  assert list(result['nets']) == ['student (b), pool5', 'teacher (face), pool5']


def test_synthesis_is_a_jitted_pure_function_of_its_inputs(shown, tiny_run):
  workdir, data_dir, *_ = shown
  config, _ = _eval_images(workdir, data_dir)
  student = expnet.from_config(config, 8)
  variables = checkpoint.trained_variables(student, config.data.image_size, os.path.join(workdir, 'b'))
  fn = visualize.student_layer_fn(student, 'pool5')
  start = jax.numpy.asarray(visualize.starting_noise(32, ASCENT))
  ascent = visualize.Ascent(steps=8)
  once = visualize.synthesize(fn, variables, start, jax.numpy.int32(0), ascent=ascent)
  np.testing.assert_array_equal(once, visualize.synthesize(fn, variables, start, jax.numpy.int32(0), ascent=ascent))
  assert not np.array_equal(once, visualize.synthesize(fn, variables, start, jax.numpy.int32(1), ascent=ascent))


def test_cli_names_a_wrong_layer_in_one_line(tmp_path):
  cmd = [sys.executable, '-m', 'fn2en_jax.visualize', f'--workdir={tmp_path}', '--layer=fc9',
         f'--output={tmp_path / "out"}']
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == errors.CONFIG
  assert done.stderr.splitlines()[-2] == "error: --layer='fc9' is not a layer of the student"
  assert not (tmp_path / 'out').exists()


def test_a_kfold_workdir_shows_the_fold_asked_for(tmp_path):
  assert visualize.run_dir(str(tmp_path), 1) == str(tmp_path)
  (tmp_path / 'kfold.json').write_text('{}')
  assert visualize.run_dir(str(tmp_path), 1) == str(tmp_path / 'fold_1')


def test_a_wrong_teacher_layer_is_named(tiny_run, tmp_path):
  workdir, data_dir, _ = tiny_run
  with pytest.raises(errors.ConfigError, match=r"--teacher_layer='pool9': VGGFace tap must be one of"):
    visualize.visualize(str(workdir), str(tmp_path / 'out'), teacher_layer='pool9', data_dir=str(data_dir))
  assert not (tmp_path / 'out').exists()


def test_a_stage_that_does_not_train_the_student_is_named(tmp_path):
  # The student stages come from the stages' own Role (stages.students()), not from a list kept here.
  with pytest.raises(errors.ConfigError, match=r"--stage='face' is not a stage that trains the student"):
    visualize.visualize(str(tmp_path), str(tmp_path / 'out'), student_stage='face')
  assert not (tmp_path / 'out').exists()
