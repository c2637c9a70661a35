"""YuNet against the Haar cascade on rendered faces: found, missed and false boxes, per condition.

  python benchmarks/face_detectors.py [--subjects=30] [--seed=0] [--json=OUT.json]

Every image is drawn by fn2en_jax/data/render.py at 320x320 (160x160 for `dataset framing`), so where its face is
follows from the renderer's geometry, not from a detector: the face centre (halfway between the eyes and the mouth)
and the head's height, in pixels. A detection is the face's when its box centre lies within 0.3 head heights of
that centre and its longer side is 0.4 to 2 head heights; every other detection is a false box. Non-face images
are uniform noise, smooth blotches, gradients, drawn shapes and renders with the face moved out of the frame.
Both detectors ignore faces under 10% of the shorter side (`predict`'s --min_face). YuNet's eye landmarks are also
scored against the renderer's eye centres: the error of the eyes' angle (what `yunet_eyes` alignment levels), in
degrees. One OpenCV thread, so that the timings do not depend on how busy the other cores are.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from fn2en_jax.data import faces, render

SIDE = 320
# (name, scale of the render's framing (1: the dataset's crop), in-plane rotations in degrees, image side)
CONDITIONS = (
    ('dataset framing', 1.0, (0.0,), 160),
    ('frontal, in a scene', 0.5, (0.0,), SIDE),
    ('small (head 0.27 of the side)', 0.3, (0.0,), SIDE),
    ('rotated 15', 0.5, (-15.0, 15.0), SIDE),
    ('rotated 30', 0.5, (-30.0, 30.0), SIDE),
    ('rotated 45', 0.5, (-45.0, 45.0), SIDE),
)


def _place(points: np.ndarray, nuisance: render.Nuisance, size: int) -> np.ndarray:
  """Face units -> pixel-centre coordinates, as render.render places the face (its roll and zoom about the image
  centre, then its shift), written out here from the renderer's documented geometry."""
  angle = np.deg2rad(nuisance.rotation)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  zoom = render.CROP_ZOOM * nuisance.scale
  return ((np.asarray(points) - 0.5) @ rotation.T * zoom + 0.5 + np.asarray(nuisance.shift)) * size - 0.5


def truth(identity: render.Identity, nuisance: render.Nuisance, size: int) -> dict:
  """Where the rendered face is: its eye centres (image-left first), face centre and head height, in pixels."""
  eyes = _place([[0.5 - identity.eye_spacing, identity.eye_y], [0.5 + identity.eye_spacing, identity.eye_y]],
                nuisance, size)
  mouth_y = identity.eye_y + identity.nose_length + identity.philtrum
  centre = _place([[0.5, (identity.eye_y + mouth_y) / 2]], nuisance, size)[0]
  head = 2 * identity.face_height * render.CROP_ZOOM * nuisance.scale * size
  return {'eyes': eyes, 'centre': centre, 'head': head}


def face_images(subjects: int, rng: np.random.Generator):
  """(condition, image, truth) for every condition and subject."""
  for name, scale, rotations, size in CONDITIONS:
    for i in range(subjects):
      identity = render.sample_identity(rng)
      posing = render.sample_posing(rng)
      expression = render.sample_expression(posing, int(rng.integers(len(render.EXPRESSIONS))), 0.8, rng)
      base = render.sample_nuisance(rng, render.LAB)
      room = max(0.0, (1 - render.CROP_ZOOM * scale) / 2 - 0.05) if scale < 1 else 0.0
      nuisance = render.Nuisance(
          rotation=rotations[i % len(rotations)], scale=scale, shift=tuple(rng.uniform(-room, room, 2)),
          brightness=base.brightness, contrast=base.contrast, white_balance=base.white_balance,
          light_angle=base.light_angle, light_strength=base.light_strength, background=base.background,
          texture=10.0, shirt=base.shirt, noise=base.noise, noise_seed=base.noise_seed)
      yield name, render.render(identity, expression, nuisance, size), truth(identity, nuisance, size)


def non_face_images(count: int, rng: np.random.Generator):
  """Images without a face: five kinds, `count` // 5 of each."""
  kinds = ('noise', 'blotches', 'gradient', 'shapes', 'face out of frame')
  for i in range(count):
    kind = kinds[i % len(kinds)]
    if kind == 'noise':
      image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    elif kind == 'blotches':
      coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
      image = cv2.resize(coarse, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    elif kind == 'gradient':
      ramp = np.linspace(0, 1, SIDE, dtype=np.float32)
      a, b = rng.uniform(0, 255, (2, 3))
      image = (a + (b - a) * ramp[None, :, None] * np.ones((SIDE, 1, 1), np.float32)).astype(np.uint8)
    elif kind == 'shapes':
      image = np.full((SIDE, SIDE, 3), rng.integers(0, 256, 3), np.uint8)
      for _ in range(12):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        centre = tuple(int(v) for v in rng.integers(0, SIDE, 2))
        if rng.uniform() < 0.5:
          axes = tuple(int(v) for v in rng.integers(5, 60, 2))
          cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
          end = tuple(int(v) for v in rng.integers(0, SIDE, 2))
          cv2.line(image, centre, end, colour, int(rng.integers(1, 8)))
    else:
      identity = render.sample_identity(rng)
      nuisance = render.Nuisance(scale=0.5, shift=(0.9, 0.0), background=tuple(rng.uniform(60, 200, 3)),
                                 texture=15.0, noise=3.0, noise_seed=int(rng.integers(2**31)))
      image = render.render(identity, np.zeros(len(render.EXPRESSION_PARAMS)), nuisance, SIDE)
    yield kind, image


def matches(box, face: dict) -> bool:
  x, y, w, h = box
  distance = np.hypot(x + w / 2 - face['centre'][0], y + h / 2 - face['centre'][1])
  return distance < 0.3 * face['head'] and 0.4 * face['head'] < max(w, h) < 2.0 * face['head']


def _angle(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))


def run(subjects: int, seed: int, non_faces: int) -> dict:
  cv2.setNumThreads(1)
  rng = np.random.default_rng(seed)
  rows: dict = {}
  seconds = {d: 0.0 for d in faces.DETECTORS}
  calls = 0
  eye_errors = []

  def row(name):
    return rows.setdefault(name, {d: {'images': 0, 'found': 0, 'missed': 0, 'false': 0}
                                  for d in faces.DETECTORS})

  samples = [(name, image, face) for name, image, face in face_images(subjects, rng)]
  samples += [(f'no face: {kind}', image, None) for kind, image in non_face_images(non_faces, rng)]
  for name, image, face in samples:
    calls += 1
    for detector in faces.DETECTORS:
      start = time.perf_counter()
      found = faces.detect_faces(image, detector, min_fraction=0.1)
      seconds[detector] += time.perf_counter() - start
      counts = row(name)[detector]
      counts['images'] += 1
      hit = next((d for d in found if face is not None and matches(d.box, face)), None)
      if face is not None:
        counts['found' if hit is not None else 'missed'] += 1
      counts['false'] += len(found) - (hit is not None)
      if detector == 'yunet' and hit is not None:
        eye_errors.append(abs(_angle(hit.left_eye, hit.right_eye) - _angle(*face['eyes'])))
  errors_deg = np.asarray(eye_errors)
  return {'rows': rows, 'ms_per_image': {d: 1000 * s / calls for d, s in seconds.items()},
          'eye_angle_error_deg': {'median': float(np.median(errors_deg)), 'p95': float(np.percentile(errors_deg, 95)),
                                  'max': float(errors_deg.max()), 'n': int(errors_deg.size)},
          'subjects': subjects, 'seed': seed, 'non_faces': non_faces}


def table(result: dict) -> str:
  lines = ['| images | n | YuNet found / missed / false | Haar found / missed / false |', '| --- | --- | --- | --- |']
  totals = {d: {'found': 0, 'missed': 0, 'false': 0} for d in faces.DETECTORS}
  for name, counts in result['rows'].items():
    cells = []
    for d in faces.DETECTORS:
      c = counts[d]
      for key in totals[d]:
        totals[d][key] += c[key]
      cells.append(f"{c['found']} / {c['missed']} / {c['false']}" if not name.startswith('no face')
                   else f"- / - / {c['false']}")
    lines.append(f"| {name} | {counts['yunet']['images']} | {cells[0]} | {cells[1]} |")
  cells = [f"**{t['found']} / {t['missed']} / {t['false']}**" for t in totals.values()]
  lines.append(f'| all | {sum(c["yunet"]["images"] for c in result["rows"].values())} | {cells[0]} | {cells[1]} |')
  ms, eye = result['ms_per_image'], result['eye_angle_error_deg']
  lines.append('')
  lines.append(f"Time per image (one thread): YuNet {ms['yunet']:.1f} ms, Haar {ms['haar']:.1f} ms. YuNet's eye "
               f"angle against the renderer's, over its {eye['n']} found faces: median error {eye['median']:.1f} "
               f"deg, 95th percentile {eye['p95']:.1f}, largest {eye['max']:.1f}.")
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--subjects', type=int, default=30, help='faces per condition')
  parser.add_argument('--non_faces', type=int, default=50, help='images without a face')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--json', default=None, help='also write the counts here')
  args = parser.parse_args()
  result = run(args.subjects, args.seed, args.non_faces)
  print(table(result))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
