"""Export: the tiny run's student through jax2tf, loaded back with TensorFlow and the TFLite interpreter, and as ONNX,
run by ONNX Runtime, gives the JAX model's probabilities on the same face crops, at any batch size."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import roundoff

from conftest import REPO
from fn2en_jax import errors
from fn2en_jax import predictor as predictor_lib
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.commands import export
from fn2en_jax.data import pipeline
from fn2en_jax.models import preprocess


def _tolerance(predictor, crops) -> float:
  """How far the exported model's probabilities of `crops` may be from the predictor's: twice the bound of
  tests/roundoff.py on either. The SavedModel runs the same StableHLO, compiled by TensorFlow's XLA for the batch it
  is given, against JAX's XLA for a batch padded to 64; TFLite runs the same operations in its own kernels (its
  converter keeps BatchNorm's subtraction, product and sum, folding only the constant rsqrt(variance + eps) x scale,
  in float32): the sums in other orders, exp and rsqrt by other implementations. Checked to be below what a
  preprocessing mistake changes (the net fed [0, 1] instead of [-1, 1]), which the comparison must catch."""
  _, error = roundoff.bound(predictor.forward, predictor.variables, crops)
  probabilities = lambda images: jax.nn.softmax(predictor.model.apply(predictor.variables, images, train=False))
  images = preprocess.from_uint8(crops)
  mistake = np.max(np.abs(probabilities((images + 1) / 2) - probabilities(images)))
  assert 2 * error < mistake, (error, mistake)
  return 2 * error


@pytest.fixture(scope='module')
def predictor(tiny_run):
  return predictor_lib.Predictor.from_workdir(str(tiny_run[0]), 'b')


@pytest.fixture(scope='module')
def crops(tiny_run, predictor):
  """Prepared uint8 crops of the stored evaluation faces, and two of random noise."""
  workdir, data_dir, _ = tiny_run
  config = workdir_lib.load_config(str(workdir))
  examples = pipeline.load(config.data, config.data.split, data_dir=str(data_dir))
  faces = [predictor_lib.prepare(examples[i]['image'], predictor.spec) for i in range(5)]
  noise = np.random.default_rng(0).integers(0, 256, (2,) + faces[0].shape, dtype=np.uint8)
  return np.concatenate([np.stack(faces), noise])


def _tflite(path, images):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  interpreter = tf.lite.Interpreter(model_path=path)
  index = interpreter.get_input_details()[0]['index']
  interpreter.resize_tensor_input(index, images.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(index, images)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]['index'])


def test_saved_model_round_trip_at_any_batch_size(predictor, crops, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  path = export.export(predictor, str(tmp_path / 'sm'), 'saved_model', stage='b')
  serve = tf.saved_model.load(path).signatures['serving_default']
  expected = predictor.probabilities(crops)
  assert not np.allclose(expected, expected[:1])  # the inputs give different answers
  tolerance = _tolerance(predictor, crops)
  for n in (1, len(crops)):
    got = serve(images=tf.constant(crops[:n]))['probabilities'].numpy()
    assert got.shape == (n, len(predictor.class_names)) and got.dtype == np.float32
    roundoff.assert_within(got, expected[:n], tolerance)
  assert (tmp_path / 'sm' / export.LABELS).read_text().split() == list(predictor.class_names)
  meta = json.loads((tmp_path / 'sm' / export.META).read_text())
  assert meta['image_size'] == predictor.spec.image_size and meta['margin'] == predictor.spec.margin
  assert [p for p in os.listdir(tmp_path) if p != 'sm'] == []  # no staging folder left


def test_tflite_round_trip_from_the_command_line(tiny_run, predictor, crops, tmp_path):
  out = tmp_path / 'tflite'
  cmd = [sys.executable, '-m', 'fn2en_jax.export', f'--workdir={tiny_run[0]}', '--format=tflite', f'--output={out}']
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'to {out / export.TFLITE}' in done.stdout
  expected = predictor.probabilities(crops)
  tolerance = _tolerance(predictor, crops)
  for n in (1, len(crops)):
    got = _tflite(str(out / export.TFLITE), crops[:n])
    roundoff.assert_within(got, expected[:n], tolerance)
  # A second export into the same, now full, folder refuses and leaves it as it was.
  before = sorted(os.listdir(out))
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == errors.WORKDIR
  assert f'error: --output={out} exists and is not an empty folder' in done.stderr
  assert sorted(os.listdir(out)) == before


def _onnxruntime(path, images):
  import onnxruntime  # pylint: disable=import-outside-toplevel
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  (inp,), (out,) = session.get_inputs(), session.get_outputs()
  assert (inp.name, inp.type, inp.shape[1:], out.name) == ('images', 'tensor(uint8)', list(images.shape[1:]),
                                                          'probabilities')
  assert isinstance(inp.shape[0], str)  # the batch dimension is symbolic
  return session.run(None, {'images': images})[0]


def test_onnx_round_trip_at_any_batch_size(predictor, crops, tmp_path):
  path = export.export(predictor, str(tmp_path / 'onnx'), 'onnx', stage='b')
  assert path == str(tmp_path / 'onnx' / export.ONNX)
  expected = predictor.probabilities(crops)
  tolerance = _tolerance(predictor, crops)
  for n in (1, 3, len(crops)):
    got = _onnxruntime(path, crops[:n])
    assert got.shape == (n, len(predictor.class_names)) and got.dtype == np.float32
    roundoff.assert_within(got, expected[:n], tolerance)
  assert (tmp_path / 'onnx' / export.LABELS).read_text().split() == list(predictor.class_names)
  assert json.loads((tmp_path / 'onnx' / export.META).read_text())['image_size'] == predictor.spec.image_size
  assert sorted(os.listdir(tmp_path)) == ['onnx']  # no staging folder left


def test_the_face_stage_exports_too(tiny_run, crops, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  face = predictor_lib.Predictor.from_workdir(str(tiny_run[0]), 'face')
  path = export.export(face, str(tmp_path / 'face'), 'saved_model', stage='face')
  got = tf.saved_model.load(path).signatures['serving_default'](images=tf.constant(crops))['probabilities']
  roundoff.assert_within(got.numpy(), face.probabilities(crops), _tolerance(face, crops))
  path = export.export(face, str(tmp_path / 'face_onnx'), 'onnx', stage='face')
  roundoff.assert_within(_onnxruntime(path, crops), face.probabilities(crops), _tolerance(face, crops))


def test_a_failed_export_leaves_nothing(predictor, tmp_path, monkeypatch):
  def broken_converter(saved_model, path):
    raise RuntimeError(f'conversion of {saved_model} to {path} failed')

  # A converter that fails after the SavedModel is written: neither the output nor the staging folder remains.
  monkeypatch.setattr(export, '_write_tflite', broken_converter)
  with pytest.raises(RuntimeError, match='conversion of'):
    export.export(predictor, str(tmp_path / 'out'), 'tflite')
  assert os.listdir(tmp_path) == []
  with pytest.raises(errors.ConfigError, match="--format='caffe'"):
    export.export(predictor, str(tmp_path / 'x'), 'caffe')
  (tmp_path / 'file').write_text('')
  with pytest.raises(errors.WorkdirError, match='exists and is not an empty folder'):
    export.export(predictor, str(tmp_path / 'file'), 'saved_model')
  assert sorted(os.listdir(tmp_path)) == ['file']
