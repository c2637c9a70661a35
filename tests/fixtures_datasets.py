"""Tiny stand-ins for the real datasets, written by the tests: the distributed folder layouts and file formats
exactly (empty label folders, scientific-notation floats, unlabelled TFD rows), with noise or drawn images only.

Each `write_*` returns what a correct builder must yield, so tests compare against facts fixed here, not against
the builder's own logic.
"""

from __future__ import annotations

import csv
import pathlib

import cv2
import numpy as np
from PIL import Image
import scipy.io


def drawn_face(height: int, width: int, cx: int, cy: int, scale: float) -> np.ndarray:
  """A cartoon face (skin ellipse, eyes, brows, nose, mouth) that OpenCV's frontal Haar cascade detects, as RGB."""
  grey = np.full((height, width), 60, np.uint8)

  def s(v):
    return int(round(v * scale))

  cv2.ellipse(grey, (cx, cy), (s(55), s(72)), 0, 0, 360, 200, -1)
  for dx in (-22, 22):
    cv2.ellipse(grey, (cx + s(dx), cy - s(15)), (s(11), s(6)), 0, 0, 360, 40, -1)
    cv2.line(grey, (cx + s(dx - 14), cy - s(30)), (cx + s(dx + 14), cy - s(30)), 50, max(1, s(4)))
  cv2.line(grey, (cx, cy - s(8)), (cx, cy + s(18)), 150, max(1, s(3)))
  cv2.ellipse(grey, (cx, cy + s(22)), (s(12), s(5)), 0, 0, 360, 110, -1)
  cv2.ellipse(grey, (cx, cy + s(42)), (s(22), s(7)), 0, 0, 360, 60, -1)
  return np.repeat(grey[..., None], 3, axis=-1)


def noise(rng: np.random.Generator, height: int, width: int, channels: int | None = 3) -> np.ndarray:
  shape = (height, width) if channels is None else (height, width, channels)
  return rng.integers(0, 256, shape, dtype=np.uint8)


def _save(path: pathlib.Path, image: np.ndarray) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(path)
  return path


# --- CK+ --------------------------------------------------------------------------------------------------------

CK_SIZE = (60, 80)  # (height, width); the real frames are 490x640 or 480x640.
CK_EYES = ((28.0, 25.0), (52.0, 25.0))  # where the fixture's landmarks put the eye centres (x, y)

# subject, sequence, number of frames, emotion code (None: unlabelled, with an empty Emotion folder; 'absent': no
# Emotion folder at all), grey frames?
_CK_SEQUENCES = [
    ('S005', '001', 5, 3, False),
    ('S005', '002', 4, None, False),
    ('S010', '001', 6, 7, True),
    ('S010', '004', 4, 2, True),
    ('S011', '001', 5, 5, False),
    ('S011', '002', 4, 'absent', False),
]


def _ck_landmarks(rng: np.random.Generator) -> np.ndarray:
  points = rng.uniform(5, 55, size=(68, 2))
  angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
  ring = np.stack([5 * np.cos(angles), 2 * np.sin(angles)], axis=-1)
  points[36:42] = np.array(CK_EYES[0]) + ring
  points[42:48] = np.array(CK_EYES[1]) + ring
  return points


def write_ck_plus(root: pathlib.Path, rng: np.random.Generator) -> dict[str, list[tuple[str, str, int, str]]]:
  """CK+ under root; returns, per config, the expected sorted (subject, sequence, frame, label) of every example."""
  expected = {'8class': [], '6class': []}
  names = ('neutral', 'anger', 'contempt', 'disgust', 'fear', 'happy', 'sadness', 'surprise')
  for subject, sequence, n, code, grey in _CK_SEQUENCES:
    for frame in range(1, n + 1):
      stem = f'{subject}_{sequence}_{frame:08d}'
      _save(root / 'cohn-kanade-images' / subject / sequence / f'{stem}.png',
            noise(rng, *CK_SIZE, channels=None if grey else 3))
      landmarks = root / 'Landmarks' / subject / sequence / f'{stem}_landmarks.txt'
      landmarks.parent.mkdir(parents=True, exist_ok=True)
      landmarks.write_text(''.join(f'   {x:.7e}   {y:.7e}\n' for x, y in _ck_landmarks(rng)))
    if code == 'absent':
      continue
    emotion_dir = root / 'Emotion' / subject / sequence
    emotion_dir.mkdir(parents=True, exist_ok=True)
    if code is None:
      continue
    (emotion_dir / f'{subject}_{sequence}_{n:08d}_emotion.txt').write_text(f'   {code:.7e}\n')
    seq = f'{subject}_{sequence}'
    expected['8class'] += [(subject, seq, 1, 'neutral')] + [(subject, seq, f, names[code]) for f in (n - 2, n - 1, n)]
    if names[code] != 'contempt':
      expected['6class'] += [(subject, seq, f, names[code]) for f in (n - 2, n - 1, n)]
  return {config: sorted(rows) for config, rows in expected.items()}


# --- Oulu-CASIA -------------------------------------------------------------------------------------------------

OULU_SIZE = (120, 160)  # (height, width); the real frames are 240x320.
# subject, folder, number of frames; the last frame of P002/Surprise is blank (no face).
_OULU_SEQUENCES = [('P001', 'Anger', 4), ('P001', 'Happiness', 5), ('P002', 'Surprise', 3)]
OULU_NO_FACE = 'OriginalImg/VL/Strong/P002/Surprise/002.jpeg'


def write_oulu_casia(root: pathlib.Path, rng: np.random.Generator) -> list[tuple[str, str, int, str]]:
  """Oulu-CASIA VL/Strong (plus an NI sequence that VL must ignore); returns the expected sorted examples."""
  expected = []
  height, width = OULU_SIZE
  for subject, folder, n in _OULU_SEQUENCES:
    for frame in range(n):
      key = f'OriginalImg/VL/Strong/{subject}/{folder}/{frame:03d}.jpeg'
      face = drawn_face(height, width, cx=width // 2 + int(rng.integers(-8, 9)), cy=height // 2, scale=0.6)
      _save(root / key, np.full_like(face, 60) if key == OULU_NO_FACE else face)
      if frame >= n - 3 and key != OULU_NO_FACE:
        label = {'Happiness': 'happy'}.get(folder, folder.lower())
        expected.append((subject, f'{subject}_{folder}', frame, label))
  for frame in range(3):
    _save(root / f'OriginalImg/NI/Strong/P001/Fear/{frame:03d}.jpeg', drawn_face(height, width, 80, 60, 0.6))
  return sorted(expected)


# --- SFEW 2.0 ---------------------------------------------------------------------------------------------------

# split folder, class folder, file stem, expected subject.
SFEW_FILES = [
    ('Train/Train_Aligned_Faces', 'Angry', 'Airheads_000519240_00000005', 'Airheads'),
    ('Train/Train_Aligned_Faces', 'Angry', 'Harry_Potter_2_000133800_00000047', 'Harry_Potter_2'),
    ('Train/Train_Aligned_Faces', 'Happy', '21_000123_00000001', '21'),
    ('Val/Val_Aligned_Faces', 'Sad', 'Airheads_000600000_00000002', 'Airheads'),
    ('Val/Val_Aligned_Faces', 'Surprise', 'oddname', 'oddname'),
]


def write_sfew(root: pathlib.Path, rng: np.random.Generator) -> dict[str, list[tuple[str, str]]]:
  """SFEW 2.0 aligned faces; returns split -> sorted (subject, label) expected."""
  labels = {'Angry': 'anger', 'Happy': 'happy', 'Sad': 'sadness', 'Surprise': 'surprise'}
  splits = {'Train/Train_Aligned_Faces': 'train', 'Val/Val_Aligned_Faces': 'validation'}
  expected = {'train': [], 'validation': []}
  for folder, label, stem, subject in SFEW_FILES:
    _save(root / folder / label / f'{stem}.png', noise(rng, 45, 36))  # the real faces are 181x143
    expected[splits[folder]].append((subject, labels[label]))
  return {split: sorted(rows) for split, rows in expected.items()}


# --- FER2013 ----------------------------------------------------------------------------------------------------

def fer2013_rows(rng: np.random.Generator) -> list[list[str]]:
  """Rows (emotion, pixels, Usage) covering all 7 labels and all 3 splits."""
  usages = ['Training'] * 4 + ['PublicTest'] * 2 + ['PrivateTest'] * 2
  emotions = [0, 3, 6, 2, 1, 5, 4, 6]
  return [[str(e), ' '.join(str(v) for v in rng.integers(0, 256, 48 * 48)), u] for e, u in zip(emotions, usages)]


def write_fer2013(root: pathlib.Path, rows: list[list[str]]) -> pathlib.Path:
  root.mkdir(parents=True, exist_ok=True)
  path = root / 'fer2013.csv'
  with path.open('w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['emotion', 'pixels', 'Usage'])
    writer.writerows(rows)
  return path


# --- TFD --------------------------------------------------------------------------------------------------------

TFD_LABS_EX = np.array([1, -1, 7, 3, -1, 4, 2])
TFD_LABS_ID = np.array([12, 5, 12, 40, 7, 40, 3])
# Subject-independent, like TFD's own folds: in each fold, the two faces of subject 12 (rows 0, 2) lie in one part,
# and so do those of subject 40 (rows 3, 5).
TFD_FOLDS = np.array([[3, 1, 2, 2, 1],
                      [0, 0, 0, 0, 0],
                      [3, 1, 2, 2, 1],
                      [1, 2, 3, 1, 2],
                      [0, 0, 0, 0, 0],
                      [1, 2, 3, 1, 2],
                      [2, 3, 1, 3, 3]])


def write_tfd(root: pathlib.Path, size: int, rng: np.random.Generator, **overrides) -> np.ndarray:
  """TFD_{size}x{size}.mat with MATLAB's column vectors; returns the images. `overrides` replace variables."""
  images = noise(rng, len(TFD_LABS_EX) * size, size, channels=None).reshape(-1, size, size)
  variables = {'images': images, 'labs_ex': TFD_LABS_EX[:, None], 'labs_id': TFD_LABS_ID[:, None],
               'folds': TFD_FOLDS, **overrides}
  root.mkdir(parents=True, exist_ok=True)
  scipy.io.savemat(root / f'TFD_{size}x{size}.mat', {k: v for k, v in variables.items() if v is not None})
  return images


# --- CK+48 ------------------------------------------------------------------------------------------------------

# folder, file stem; no contempt folder (an empty class folder is an error).
CK48_FILES = [('anger', 'S005_001_00000009'), ('anger', 'S005_001_00000010'), ('happy', 'S010_006_00000014'),
              ('surprise', 'S011_002_00000020')]


def write_ck_plus_48(root: pathlib.Path, rng: np.random.Generator) -> list[tuple[str, str, int, str]]:
  """CK+48 under root; returns the expected sorted (subject, sequence, frame, label)."""
  expected = []
  for folder, stem in CK48_FILES:
    _save(root / 'CK+48' / folder / f'{stem}.png', noise(rng, 48, 48, channels=None))
    subject, sequence, frame = stem.split('_')
    expected.append((subject, f'{subject}_{sequence}', int(frame), folder))
  return sorted(expected)
