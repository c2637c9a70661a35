"""Face alignment, run once at dataset build time: eyes from landmarks, else a Haar-cascade box, then a square crop.

Every function takes and returns uint8 RGB arrays (H, W, 3). `align` returns None when it finds no face, so that the
caller can report the frame; nothing here drops or keeps a frame on its own.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

ALIGNMENTS = ('landmarks', 'haar', 'none')

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


def detect_face(image: np.ndarray, min_fraction: float = 0.2) -> tuple[int, int, int, int] | None:
  """The largest frontal face as (x, y, w, h), or None.

  Faces smaller than `min_fraction` of the shorter image side are ignored: in these datasets the face fills much of
  the frame, and small detections are background false positives.
  """
  grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
  min_side = max(1, int(min_fraction * min(grey.shape)))
  boxes = frontal_face_cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                   minSize=(min_side, min_side))
  if len(boxes) == 0:
    return None
  x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
  return int(x), int(y), int(w), int(h)


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


def align(image: np.ndarray, method: str, size: int, *, landmarks: np.ndarray | None = None,
          margin: float = 0.2) -> np.ndarray | None:
  """One aligned size x size face crop by `method` (one of ALIGNMENTS); None when 'haar' finds no face."""
  if method == 'landmarks':
    if landmarks is None:
      raise ValueError("Alignment 'landmarks' needs the frame's landmarks.")
    return align_by_eyes(image, *eye_centres(landmarks), size)
  if method == 'haar':
    box = detect_face(image)
    return None if box is None else crop_square(image, box, size, margin)
  if method == 'none':
    return centre_crop(image, size)
  raise ValueError(f'Unknown alignment {method!r}; expected one of {ALIGNMENTS}.')
