"""Writes dlib_resnet_descriptors.npz: synthetic 150x150 face chips and their descriptors computed by dlib itself.

Run once, with dlib installed (`pip install dlib`, or the prebuilt `dlib-bin`), from the repository root:
  python tests/golden/make_dlib_resnet_descriptors.py PATH/dlib_face_recognition_resnet_model_v1.dat
The chips are drawn (no real person's face) and stored with the numbers, so the test needs neither dlib nor PIL
to reproduce its input.
"""

import sys

import dlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 150  # dlib's face chip: what get_face_chip(img, shape, size=150, padding=0.25) returns


def draw_face(rng: np.random.Generator) -> np.ndarray:
  background = tuple(int(v) for v in rng.integers(0, 256, 3))
  skin = tuple(int(v) for v in rng.integers((150, 90, 60), (256, 200, 170)))
  img = Image.new('RGB', (SIZE, SIZE), background)
  d = ImageDraw.Draw(img)
  # Roughly where dlib's 5-point alignment puts a face in the chip: eyes near y=60, mouth near y=110.
  w, h = rng.integers(40, 56), rng.integers(58, 72)
  d.ellipse((75 - w, 80 - h, 75 + w, 80 + h), fill=skin)
  d.pieslice((75 - w - 4, 80 - h - 8, 75 + w + 4, 80 + h // 2), 180, 360, fill=tuple(int(v) for v in rng.integers(0, 90, 3)))
  eye_y, eye_dx = rng.integers(56, 66), rng.integers(18, 26)
  for cx in (75 - eye_dx, 75 + eye_dx):
    d.ellipse((cx - 9, eye_y - 5, cx + 9, eye_y + 5), fill=(245, 245, 240))
    d.ellipse((cx - 4, eye_y - 4, cx + 4, eye_y + 4), fill=tuple(int(v) for v in rng.integers(20, 120, 3)))
    d.line((cx - 11, eye_y - 11 - rng.integers(0, 5), cx + 11, eye_y - 11), fill=(60, 40, 30), width=3)
  d.polygon(((75, eye_y + 8), (68, 96), (82, 96)), fill=tuple(max(0, c - 30) for c in skin))
  mouth_y, smile = rng.integers(106, 116), rng.integers(-8, 12)
  d.arc((55, mouth_y - 10 - smile, 95, mouth_y + 10 + smile), 10 if smile >= 0 else 190, 170 if smile >= 0 else 350,
        fill=(150, 40, 50), width=4)
  return np.asarray(img.filter(ImageFilter.GaussianBlur(1.2)), dtype=np.uint8)


def main(path: str) -> None:
  rng = np.random.default_rng(2017)
  chips = np.stack([draw_face(rng) for _ in range(4)])
  net = dlib.face_recognition_model_v1(path)
  # The image-only overload takes an already aligned 150x150 chip and skips dlib's own cropping.
  descriptors = np.stack([np.array(net.compute_face_descriptor(chip, 0)) for chip in chips])
  np.savez_compressed('tests/golden/dlib_resnet_descriptors.npz', chips=chips, descriptors=descriptors,
                      dlib_version=np.array(dlib.__version__))
  print(descriptors.shape, np.linalg.norm(descriptors, axis=1))


if __name__ == '__main__':
  main(sys.argv[1])
