"""Predict: a finished tiny run's nets on drawn photos with several faces, a video, a file that is not an image and a
photo without a face; probabilities against the model applied to the training pipeline's own evaluation crops."""

import json
import os
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest
import roundoff
from PIL import Image

import fixtures_datasets as fx
from conftest import REPO
from fn2en_jax import errors
from fn2en_jax import predictor as predictor_lib
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.commands import predict
from fn2en_jax.data import faces, pipeline
from fn2en_jax.models import preprocess

# Face centres (x, y) of the drawn photos: two faces side by side, and one.
TWO = ((100, 130), (300, 130))
ONE = ((160, 120),)


def _photo(centres, height=260, width=420) -> np.ndarray:
  """Drawn faces (each one `fx.drawn_face`, which the Haar cascade detects) pasted side by side."""
  photo = np.full((height, width, 3), 60, np.uint8)
  for cx, cy in centres:
    face = fx.drawn_face(height, width, cx=cx, cy=cy, scale=0.8)
    mask = np.abs(face.astype(int) - 60).sum(-1) > 0
    photo[mask] = face[mask]
  return photo


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp('predict_inputs')
  paths = {'two': root / 'two.png', 'one': root / 'one.jpg', 'blank': root / 'blank.png',
           'text': root / 'notes.txt', 'video': root / 'clip.avi'}
  Image.fromarray(_photo(TWO)).save(paths['two'])
  Image.fromarray(_photo(ONE, 240, 320)).save(paths['one'], quality=95)
  Image.fromarray(np.full((200, 300, 3), 60, np.uint8)).save(paths['blank'])
  paths['text'].write_text('not an image\n')
  # Five frames of a face moving right; frame 3 has no face.
  writer = cv2.VideoWriter(str(paths['video']), cv2.VideoWriter_fourcc(*'MJPG'), 10, (320, 240))
  for i in range(5):
    frame = _photo(((110 + 20 * i, 120),), 240, 320) if i != 3 else np.full((240, 320, 3), 60, np.uint8)
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()
  return paths


@pytest.fixture(scope='module')
def predictor(tiny_run):
  return predictor_lib.Predictor.from_workdir(str(tiny_run[0]), 'b')


def _decoded(path) -> np.ndarray:
  return np.asarray(Image.open(path).convert('RGB'))


def _video_frames(path) -> list[np.ndarray]:
  capture, frames = cv2.VideoCapture(str(path)), []
  while True:
    ok, bgr = capture.read()
    if not ok:
      return frames
    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _tolerance(predictor, crops) -> float:
  """How far apart two float32 computations of the net's probabilities of the uint8 `crops` may be: twice the bound
  of tests/roundoff.py on either (the predictor runs the net jitted, on uint8 crops in batches padded with zeros; the
  references here run it op by op on the pipeline's float crops, or another process runs it: the same operations,
  the sums in other orders). Checked to stay under a tenth of what a preprocessing mistake changes (a horizontal
  flip, a one-pixel shift, BGR for RGB: 0.45% or more on this net)."""
  _, error = roundoff.bound(predictor.forward, predictor.variables, crops)
  assert 2 * error < 4e-4, error
  return 2 * error


def _reference(predictor, image, boxes) -> tuple[np.ndarray, float]:
  """The model on the crops the training pipeline makes (the builder's square crop, then `preprocess_eval`), and
  how far from it another computation of the same probabilities may be (`_tolerance`)."""
  spec = predictor.spec
  crops = np.stack([pipeline.preprocess_eval(faces.crop_square(image, box, spec.stored_size, spec.margin),
                                             spec.image_size, spec.resize) for box in boxes])
  logits = predictor.model.apply(predictor.variables, crops, train=False)
  uint8 = preprocess.to_uint8(crops)  # the pipeline's crops before their scaling, as the predictor takes them
  np.testing.assert_array_equal(preprocess.from_uint8(uint8), crops)
  return np.asarray(jax.nn.softmax(logits, axis=-1)), _tolerance(predictor, uint8)


def _assert_sums_to_one(probs, num_classes):
  """Each row of softmax probabilities sums to 1 within 2 gamma(C - 1) + 3 u, C classes: the computed exponentials,
  whatever their own error, are divided by their computed sum (within gamma(C - 1) of theirs), each quotient
  rounded at most twice (a division, or a product with the rounded reciprocal), and the C quotients are summed here
  again (gamma(C - 1)); the third u covers the products of two roundings."""
  roundoff.assert_within(np.sum(probs, -1), 1.0, 2 * roundoff.gamma(num_classes - 1) + 3 * roundoff.U)


def test_the_workdir_fixes_the_preprocessing(predictor, tiny_run):
  config = json.loads((tiny_run[0] / 'config.json').read_text())
  data = config['data']
  assert predictor.spec.image_size == data['image_size'] == 32
  assert predictor.spec.resize == round(data['image_size'] * data['crop_scale'])
  assert predictor.spec.stored_size == data['builder_options']['image_size']  # what the synth_faces builder stored
  assert not predictor.spec.grey
  summary = json.loads((tiny_run[0] / 'b' / 'summary.json').read_text())
  assert list(predictor.class_names) == summary['class_names']


def test_crops_of_the_evaluation_set_reproduce_the_stage_evaluation(predictor, tiny_run):
  """The stored evaluation faces through `Predictor.__call__` give the confusion matrix stage b recorded: the same
  preprocessing, the same final weights."""
  workdir, data_dir, _ = tiny_run
  config = workdir_lib.load_config(str(workdir))
  examples = pipeline.load(config.data, config.data.split, data_dir=str(data_dir))
  _, test = pipeline.subject_split(examples, config.data.fold, config.data.num_folds)
  probs = predictor([test[i]['image'] for i in range(len(test))])
  _assert_sums_to_one(probs, len(predictor.class_names))
  # Stage b's evaluation took the arg max of its own computation of these numbers (jitted, 2 faces a device): a face
  # whose two largest probabilities are closer than twice the tolerance may fall in either class there; every other
  # face is counted where the predictor puts it.
  tolerance = _tolerance(predictor, np.stack([predictor_lib.prepare(test[i]['image'], predictor.spec)
                                              for i in range(len(test))]))
  near = probs >= probs.max(-1, keepdims=True) - 2 * tolerance  # the classes each face may be given
  sure = near.sum(-1) == 1
  counts = np.zeros((len(predictor.class_names),) * 2, int)
  np.add.at(counts, (test.labels[sure], probs[sure].argmax(-1)), 1)
  summary = np.asarray(json.loads((workdir / 'b' / 'summary.json').read_text())['confusion_matrix'])
  assert sure.sum() >= len(test) - 2, near  # the comparison is about nearly every face
  unsure = summary - counts  # the faces that are not sure, where the evaluation counted them
  assert np.all(unsure >= 0) and np.all(unsure.sum(1) == np.bincount(test.labels[~sure], minlength=len(unsure)))
  possible = np.zeros_like(near[0], shape=unsure.shape)
  np.logical_or.at(possible, test.labels[~sure], near[~sure])
  assert np.all(possible | (unsure == 0)), (unsure, possible)


def test_predict_faces_finds_every_face_and_matches_the_model(predictor, inputs):
  image = _decoded(inputs['two'])
  found = predictor.predict_faces(image)
  assert len(found) == 2
  for face, (cx, cy) in zip(found, TWO):  # left to right
    x, y, w, h = face.box
    assert abs(x + w / 2 - cx) < 12 and abs(y + h / 2 - cy) < 20
    assert face.label == predictor.class_names[int(np.argmax(face.probabilities))]
  probs = np.stack([f.probabilities for f in found])
  _assert_sums_to_one(probs, len(predictor.class_names))
  roundoff.assert_within(probs, *_reference(predictor, image, [f.box for f in found]))
  assert predictor.predict_faces(_decoded(inputs['blank'])) == []


def test_faces_are_batched_across_frames_in_input_order_with_one_compilation(tiny_run, inputs):
  """A batch of 4 and frames of 2, 1 and 2 faces: batches split frames, each frame still gets its own faces."""
  small = predictor_lib.Predictor.from_workdir(str(tiny_run[0]), 'b', batch_size=4)
  images = [_decoded(inputs['two']), _decoded(inputs['one']), _decoded(inputs['two'])]
  emitted = []
  batcher = predict.Batcher(small, lambda frame, source, boxes, probs: emitted.append((frame.file, boxes, probs)))
  for i, image in enumerate(images):
    boxes = predictor_lib.detect(image)
    batcher.add(predict.Frame(f'image{i}', None, image, None), predict.Source(f'image{i}', ''), boxes,
                small.crops(image, boxes))
  # The first batch of 4 held the faces of images 0 and 1 and one of image 2's: image 2 waits for its second face.
  assert [e[0] for e in emitted] == ['image0', 'image1']
  batcher.flush()
  assert [e[0] for e in emitted] == ['image0', 'image1', 'image2']
  for (_, boxes, probs), image in zip(emitted, images):
    assert len(boxes) == len(predictor_lib.detect(image))
    roundoff.assert_within(probs, *_reference(small, image, boxes))
  assert small._forward._cache_size() == 1  # pylint: disable=protected-access


def test_cli_on_photos_a_video_a_text_file_and_a_faceless_photo(predictor, tiny_run, inputs, tmp_path):
  out = tmp_path / 'annotated'
  cmd = [sys.executable, '-m', 'fn2en_jax.predict', f'--workdir={tiny_run[0]}', '--json', f'--annotate={out}',
         str(inputs['two']), str(inputs['blank']), str(inputs['text']), str(inputs['video'])]
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == errors.INPUT, done.stderr[-3000:]
  errors_named = [line for line in done.stderr.splitlines() if 'notes.txt' in line]
  assert errors_named and errors_named[0].startswith(f'error: {inputs["text"]}: not an image or a video')
  rows = [json.loads(line) for line in done.stdout.splitlines()]
  by_file = {}
  for row in rows:
    by_file.setdefault(os.path.basename(row['file']), []).append(row)
  assert set(by_file) == {'two.png', 'blank.png', 'clip.avi'}
  assert by_file['blank.png'] == [{'file': str(inputs['blank']), 'frame': None, 'box': None, 'label': None,
                                   'probabilities': None}]
  two = _decoded(inputs['two'])
  assert [r['frame'] for r in by_file['two.png']] == [None, None]
  boxes = [tuple(r['box']) for r in by_file['two.png']]
  assert boxes == predictor_lib.detect(two)
  frames = _video_frames(inputs['video'])
  with_faces = [i for i, frame in enumerate(frames) if predictor_lib.detect(frame)]
  assert 3 not in with_faces and len(with_faces) >= 3  # frame 3 is blank; MJPG may cost the cascade another one
  assert [r['frame'] for r in by_file['clip.avi']] == with_faces
  assert f'clip.avi: no face found in {len(frames) - len(with_faces)} frame(s)' in done.stderr
  for row in rows:
    if row['box'] is None:
      continue
    probs = np.array([row['probabilities'][n] for n in predictor.class_names])
    assert row['label'] == predictor.class_names[int(probs.argmax())]
    _assert_sums_to_one(probs, len(predictor.class_names))  # the JSON holds the float32 numbers exactly
    image = two if row['frame'] is None else frames[row['frame']]
    expected, tolerance = _reference(predictor, image, [tuple(row['box'])])
    roundoff.assert_within(probs, expected[0], tolerance)
  # The annotated photo has its boxes drawn in green; the annotated video has every frame.
  drawn = _decoded(out / 'two.png')
  assert drawn.shape == two.shape
  x, y, w, h = boxes[0]
  np.testing.assert_array_equal(drawn[y + h // 2, x], [0, 255, 0])
  assert len(_video_frames(out / 'clip.avi')) == len(frames) == 5


def test_text_output_and_a_missing_input(tiny_run, inputs):
  cmd = [sys.executable, '-m', 'fn2en_jax.predict', f'--workdir={tiny_run[0]}', str(inputs['one']),
         str(inputs['blank']), str(inputs['one']) + '.missing']
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == errors.INPUT, done.stderr[-3000:]
  lines = done.stdout.splitlines()
  assert len(lines) == 2
  assert lines[0].startswith(f'{inputs["one"]}: box=') and 'neutral=' in lines[0]
  assert lines[1] == f'{inputs["blank"]}: no face found'
  assert f'error: {inputs["one"]}.missing: no such file or folder' in done.stderr
  assert 'remedy: ' in done.stderr


def test_k_fold_workdirs_and_runs_written_before_config_json(tiny_run, tmp_path, caplog):
  """A k-fold workdir (folds standing in for fold_<i>/ by links to the tiny run) picks fold 0 unless told."""
  workdir = tiny_run[0]
  kfold = tmp_path / 'kfold'
  kfold.mkdir()
  for i in (0, 1):
    (kfold / f'fold_{i}').symlink_to(workdir, target_is_directory=True)
  assert predictor_lib.resolve_workdir(str(kfold), None) == str(kfold / 'fold_0')
  assert 'predicting with fold 0' in caplog.text
  assert predictor_lib.resolve_workdir(str(kfold), 1) == str(kfold / 'fold_1')
  fold_1 = predictor_lib.Predictor.from_workdir(str(kfold), 'b', fold=1)
  assert fold_1.class_names == predictor_lib.Predictor.from_workdir(str(workdir), 'b').class_names
  with pytest.raises(errors.ConfigError, match=r'--fold=5: .* has the folds \[0, 1\]'):
    predictor_lib.resolve_workdir(str(kfold), 5)
  with pytest.raises(errors.ConfigError, match='is a single-fold run'):
    predictor_lib.resolve_workdir(str(workdir), 0)
  # A run from before config.json: the config that results.json carries.
  old = tmp_path / 'old'
  old.mkdir()
  (old / 'results.json').write_text((workdir / 'results.json').read_text())
  assert workdir_lib.load_config(str(old)).data.to_dict() == workdir_lib.load_config(str(workdir)).data.to_dict()
  with pytest.raises(errors.WorkdirError, match='neither config.json nor results.json'):
    workdir_lib.load_config(str(tmp_path))


def test_annotating_into_the_input_folder_is_refused_before_anything_runs(predictor, tmp_path):
  photo = tmp_path / 'photo.png'
  Image.fromarray(_photo(ONE, 240, 320)).save(photo)
  before = photo.read_bytes()
  with pytest.raises(errors.ConfigError, match=f'would overwrite the input {photo}'):
    predict.predict(predictor, [str(photo)], annotate=str(tmp_path))
  assert photo.read_bytes() == before


def test_grey_datasets_see_grey_faces():
  rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  grey = np.asarray(predictor_lib.model_input(rgb, grey=True))
  expected = cv2.cvtColor(rgb.reshape(16, 8, 3), cv2.COLOR_RGB2GRAY).reshape(2, 8, 8) / 127.5 - 1
  np.testing.assert_allclose(grey[..., 0], expected, atol=1 / 127.5)  # cv2 rounds to integers, this does not
  assert (grey == grey[..., :1]).all()
  # XLA's scaling against NumPy's: the same two operations, within twice the bound of tests/roundoff.py on either
  # (the quotient, up to 2, rounded twice at most: 4 u; the difference, up to 1, once: u).
  _, error = roundoff.bound(lambda x: predictor_lib.model_input(x, grey=False), rgb)
  assert error <= 6 * roundoff.U
  roundoff.assert_within(predictor_lib.model_input(rgb, grey=False), preprocess.from_uint8(rgb), 2 * error)
