"""A trained net of a workdir with the preprocessing its dataset had: face crops -> expression probabilities.

  predictor = Predictor.from_workdir(DIR, stage='b')
  probabilities = predictor(face_crops)            # (N, num_classes); uint8 RGB crops of any size
  faces = predictor.predict_faces(photo)           # [Face(box, label, probabilities)], one per detected face

A face is found by `detect` (YuNet, data/yunet.py, unless the dataset was built with Haar-cascade boxes: then the
Haar cascade, so that a box frames the face as in training; `detector=` takes any `image -> boxes` function, or
one returning `faces.Detection`s), and cropped and normalised as the training pipeline fed that workdir's dataset
to the net:

  1. the crop the dataset builder stored: a square around the box grown by the builder's margin, resized to the
     stored image size (both read from the built dataset's metadata in `config.data_dir`; where the dataset does not
     record them, the Haar builders' margin 0.2 and the size `round(image_size * crop_scale)`); for a dataset built
     with `yunet_eyes` alignment that square turned to level YuNet's eye landmarks, and for one aligned by its own
     landmarks (CK+) the eyes put where `faces.align_by_eyes` put them;
  2. `data/pipeline.py`'s evaluation preprocessing: resize to `round(image_size * crop_scale)`, centre crop of
     `image_size`;
  3. `model_input`: grey datasets (`GREY_DATASETS`, stored as three equal channels) see grey faces, then RGB is scaled
     to [-1, 1].

Every value comes from the workdir's saved config (`config.json`, or the `config` of `results.json` of runs written
before it existed), never from defaults. A k-fold workdir (`fold_<i>/` folders) predicts with `fold=i`, or with
fold 0 and a note saying so: every fold's net is an equally good model, trained on a different subset of subjects.
Faces are batched in fixed batches of `BATCH_SIZE` (the last one padded), so the net compiles once.

predict.py reads photos, videos and a webcam through it; export.py exports its `forward`.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from fn2en_jax import errors, models, stages
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.data import build, faces, pipeline, yunet
from fn2en_jax.models import expnet, face_nets, preprocess
from fn2en_jax.train import checkpoint

BATCH_SIZE = 64
STAGES = stages.expression_nets()  # the trained nets that classify expressions
# Datasets distributed as grey images (the builders store them as three equal channels): a colour photo would show
# the net something it never saw in training.
GREY_DATASETS = ('ck_plus', 'ck_plus_48', 'fer2013', 'tfd')
# ITU-R BT.601 luma, the weights of OpenCV's and PIL's RGB -> grey.
LUMA = (0.299, 0.587, 0.114)
# The margin the Haar-cascade builders grow a box by (`_common.FaceConfig.margin`), for datasets that record none.
DEFAULT_MARGIN = 0.2

Box = tuple[int, int, int, int]


# --- Faces ------------------------------------------------------------------------------------------------------

def whole(box) -> Box:
  return tuple(int(round(v)) for v in box)


def detect_faces(image: np.ndarray, min_fraction: float = 0.1, *, detector: str = faces.DEFAULT_DETECTOR,
                 model: str | None = None) -> list[faces.Detection]:
  """Every face `detector` ('yunet' or 'haar') finds in a uint8 RGB image, left to right, boxes in whole pixels;
  faces smaller than `min_fraction` of the shorter side are ignored (at that size they are mostly background false
  positives)."""
  found = faces.detect_faces(image, detector, min_fraction, model=model)
  found = [dataclasses.replace(d, box=whole(d.box)) for d in found]
  return sorted(found, key=lambda d: (d.box[0], d.box[1]))


def detect(image: np.ndarray, min_fraction: float = 0.1, *, detector: str = faces.DEFAULT_DETECTOR,
           model: str | None = None) -> list[Box]:
  """The boxes (x, y, w, h) of `detect_faces`."""
  return [d.box for d in detect_faces(image, min_fraction, detector=detector, model=model)]


def detector_for(spec: 'CropSpec', detector: str = 'auto', *, min_fraction: float = 0.1,
                 model: str | None = None) -> Callable[[np.ndarray], list[faces.Detection]]:
  """The detector `predict` uses: `detector`, or for 'auto' the one whose boxes the dataset was cropped by (Haar
  for alignment 'haar', whose boxes are squarer and larger than YuNet's; YuNet otherwise)."""
  if detector == 'auto':
    detector = 'haar' if spec.alignment == 'haar' else faces.DEFAULT_DETECTOR
  if detector not in faces.DETECTORS:
    raise errors.ConfigError(f'--detector={detector!r}: expected auto or one of {faces.DETECTORS}',
                             'yunet (the default) or haar (the Haar cascade, needs no model file)')
  if detector == 'yunet':
    model = yunet.model_path(model)  # a missing model file is reported now, not at the first photo
  return functools.partial(detect_faces, min_fraction=min_fraction, detector=detector, model=model)


@dataclasses.dataclass(frozen=True)
class CropSpec:
  """How the training data framed and coloured a face: the stored crop's side and margin, the model's input."""
  stored_size: int
  margin: float
  resize: int
  image_size: int
  grey: bool
  alignment: str = 'none'  # the builder's (faces.ALIGNMENTS), as its metadata records it


def _dataset_dir(data: ml_collections.ConfigDict, data_dir: str) -> str | None:
  """The newest built version folder of the workdir's dataset in `data_dir`, or None."""
  # The folder is named by the builder config that `pipeline.load` makes: synth_faces and image_folder name theirs
  # from their options.
  config = data.config
  try:
    made = build.builder_config(f'{data.name}/{data.config}' if data.config else data.name,
                                manual_dir=data.manual_dir or None, options=dict(pipeline.builder_options(data)))
    config = made.name if made is not None else config
  except (errors.UserError, ValueError, OSError) as e:
    logging.warning('cannot name the built dataset of config.data: %s', getattr(e, 'cause', e))
    return None
  root = os.path.join(os.path.expanduser(data_dir), data.name, *([config] if config else []))
  versions = sorted(glob.glob(os.path.join(root, '*', 'features.json')))
  return os.path.dirname(versions[-1]) if versions else None


def crop_spec(config: ml_collections.ConfigDict) -> CropSpec:
  data = config.data
  resize = pipeline.resize_for(data)
  stored_size, margin, alignment = resize, DEFAULT_MARGIN, 'none'
  where = _dataset_dir(data, config.data_dir)
  if where is None:
    logging.warning('%s is not built in %s: cropping faces with margin %.2f at %d pixels; the dataset would say '
                    'how it cropped them', data.name, config.data_dir, margin, stored_size)
  else:
    with open(os.path.join(where, 'features.json')) as f:
      features = json.load(f)
    image = features['featuresDict']['features']['image']['image']
    side = int(image['shape']['dimensions'][0])
    stored_size = side if side > 0 else stored_size  # -1: a dataset of any size, resized by the pipeline
    metadata = os.path.join(where, 'metadata.json')
    if os.path.exists(metadata):
      with open(metadata) as f:
        recorded = json.load(f).get('faces', {})
      margin = float(recorded.get('margin', margin))
      alignment = str(recorded.get('alignment', alignment))
  return CropSpec(stored_size=stored_size, margin=margin, resize=resize, image_size=int(data.image_size),
                  grey=data.name in GREY_DATASETS, alignment=alignment)


def crop_face(image: np.ndarray, face: Box | faces.Detection, spec: CropSpec) -> np.ndarray:
  """The face (a box, or a Detection) as the dataset builder stored it, at the stored size: a square around the
  box grown by the margin; where the dataset was aligned by eyes and the detector gives them, aligned by them."""
  if isinstance(face, faces.Detection):
    if face.landmarks is not None and spec.alignment == 'yunet_eyes':
      return faces.align_by_eye_landmarks(image, face, spec.stored_size, spec.margin)
    if face.landmarks is not None and spec.alignment == 'landmarks':
      return faces.align_by_eyes(image, face.left_eye, face.right_eye, spec.stored_size)
    face = face.box
  return faces.crop_square(image, face, spec.stored_size, spec.margin)


def prepare(crop: np.ndarray, spec: CropSpec) -> np.ndarray:
  """A uint8 RGB face crop of any size -> uint8 (image_size, image_size, 3): `pipeline.preprocess_eval` without its
  final scaling (which `model_input` does on the device, where the export does it too)."""
  crop = np.asarray(crop)
  if crop.ndim == 2:
    crop = np.repeat(crop[..., None], 3, axis=-1)
  if crop.ndim != 3 or crop.shape[-1] != 3 or crop.dtype != np.uint8:
    raise errors.InputError(f'a face crop is {crop.dtype} of shape {crop.shape}; expected uint8 (H, W, 3) RGB',
                            'pass images as uint8 RGB arrays, e.g. np.asarray(PIL.Image.open(path).convert("RGB"))')
  if crop.shape[:2] != (spec.resize, spec.resize):
    crop = np.asarray(Image.fromarray(crop).resize((spec.resize, spec.resize), Image.BILINEAR))
  offset = (spec.resize - spec.image_size) // 2
  return crop[offset:offset + spec.image_size, offset:offset + spec.image_size]


def model_input(images: jax.Array, grey: bool) -> jax.Array:
  """uint8 RGB (N, S, S, 3) -> float32 in [-1, 1], grey first for grey datasets (the training pipeline's `preprocess.from_uint8`)."""
  x = images.astype(jnp.float32)
  if grey:
    x = jnp.repeat(x @ jnp.asarray(LUMA, jnp.float32)[:, None], 3, axis=-1)
  return preprocess.from_uint8(x)


# --- The trained net --------------------------------------------------------------------------------------------

def resolve_workdir(workdir: str, fold: int | None) -> str:
  """The single-fold run directory to read: `workdir` itself, or its fold `fold` (fold 0 by default)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise errors.WorkdirError(f'--workdir={workdir} does not exist', 'pass the workdir of a finished run')
  if not workdir_lib.is_kfold(workdir):
    if fold is not None:
      raise errors.ConfigError(f'--fold={fold}: {workdir} is a single-fold run (it has no fold_<i> folders)',
                               'leave out --fold')
    return workdir
  folds = workdir_lib.folds(workdir)
  if fold is None:
    fold = folds[0]
    logging.warning('%s is a k-fold run; predicting with fold %d (pass --fold=i for another)', workdir, fold)
  if fold not in folds:
    raise errors.ConfigError(f'--fold={fold}: {workdir} has the folds {folds}', 'pass one of them')
  return workdir_lib.fold_dir(workdir, fold)


def class_names(workdir: str, stage: str) -> tuple[str, ...]:
  """The expression names in label order, as the stage's evaluation recorded them."""
  path = os.path.join(workdir, stage, 'summary.json')
  if os.path.exists(path):
    with open(path) as f:
      return tuple(json.load(f)['class_names'])
  path = os.path.join(workdir, workdir_lib.RESULTS_JSON)
  if os.path.exists(path):
    with open(path) as f:
      summaries = json.load(f)['stages']
    if stage in summaries:
      return tuple(summaries[stage]['class_names'])
  raise errors.WorkdirError(f'{os.path.join(workdir, stage)}: stage {stage!r} has no summary.json; it has not '
                            'finished in this workdir', f'run it first, or pick another --stage of {STAGES}')


def build_model(config: ml_collections.ConfigDict, stage: str, num_classes: int):
  """The net a stage trained (its `stages.Role`): the student for b and scratch, the fine-tuned face net for face."""
  if stage in STAGES and stages.STAGES[stage].ROLE.net == 'student':
    return expnet.from_config(config, num_classes)
  if stage in STAGES and stages.STAGES[stage].ROLE.net == 'face_net':
    return face_nets.build(config.teacher, num_classes, models.dtype(config))
  raise errors.ConfigError(f'--stage={stage!r}: expected one of {STAGES}', 'b is FN2EN, scratch the baseline '
                           'trained from random initialisation, face the fine-tuned face net')


@dataclasses.dataclass(frozen=True)
class Face:
  box: Box
  label: str
  probabilities: np.ndarray


class Predictor:
  """A trained net with its preprocessing: face crops -> class probabilities, and photos -> faces."""

  def __init__(self, model, variables: dict, class_names: Sequence[str], spec: CropSpec, *,
               detector: Callable[[np.ndarray], Sequence[Box | faces.Detection]] | None = None,
               batch_size: int = BATCH_SIZE):
    self.model, self.variables, self.spec = model, variables, spec
    self.class_names = tuple(class_names)
    self.detector = detector_for(spec) if detector is None else detector
    self.batch_size = batch_size
    self._forward = jax.jit(self.forward)

  @classmethod
  def from_workdir(cls, workdir: str, stage: str = 'b', *, fold: int | None = None, detector=None,
                   choose_detector: Callable[[CropSpec], Callable] | None = None, **kwargs) -> 'Predictor':
    """`detector`: as for __init__; or `choose_detector`, a function of the workdir's CropSpec that returns one
    (`detector_for` with options), so that the detector is known, and its model file found, before the net is
    loaded."""
    run_dir = resolve_workdir(workdir, fold)
    config = workdir_lib.load_config(run_dir)
    names = class_names(run_dir, stage)
    spec = crop_spec(config)
    if detector is None:
      detector = (choose_detector or detector_for)(spec)
    model = build_model(config, stage, len(names))
    variables = checkpoint.trained_variables(model, config.data.image_size, os.path.join(run_dir, stage))
    return cls(model, variables, names, spec, detector=detector, **kwargs)

  def forward(self, variables: dict, images: jax.Array) -> jax.Array:
    """The pure function that is exported: uint8 (N, image_size, image_size, 3) -> float32 probabilities."""
    logits = self.model.apply(variables, model_input(images, self.spec.grey), train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  def probabilities(self, images: np.ndarray) -> np.ndarray:
    """uint8 (N, image_size, image_size, 3), already prepared -> (N, num_classes), in fixed padded batches."""
    images = np.asarray(images, np.uint8)
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      padded = np.concatenate([chunk, np.zeros((self.batch_size - len(chunk),) + chunk.shape[1:], np.uint8)])
      out.append(np.asarray(self._forward(self.variables, padded))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

  def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
    """Face crops (uint8 RGB, any size, framed like the dataset's faces) -> (N, num_classes) probabilities."""
    return self.probabilities(np.stack([prepare(c, self.spec) for c in crops]) if len(crops) else
                              np.zeros((0, self.spec.image_size, self.spec.image_size, 3), np.uint8))

  def crops(self, image: np.ndarray, found: Sequence[Box | faces.Detection]) -> list[np.ndarray]:
    return [prepare(crop_face(image, face, self.spec), self.spec) for face in found]

  def find(self, image: np.ndarray) -> tuple[list[Box], list[np.ndarray]]:
    """The detector's faces in a uint8 RGB photo: their boxes and their prepared crops."""
    found = list(self.detector(image))
    boxes = [whole(f.box if isinstance(f, faces.Detection) else f) for f in found]
    return boxes, self.crops(image, found)

  def predict_faces(self, image: np.ndarray) -> list[Face]:
    """Every face the detector finds in a uint8 RGB photo, with its expression."""
    boxes, crops = self.find(image)
    probs = self.probabilities(np.stack(crops)) if boxes else []
    return [Face(box, self.class_names[int(np.argmax(p))], p) for box, p in zip(boxes, probs)]
