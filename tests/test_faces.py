"""Face alignment: eyes land where they should, crops keep place and scale, the Haar path finds a drawn face and
reports a blank frame as faceless."""

import numpy as np
import pytest

import fixtures_datasets as fx
from fn2en_jax.data import faces


def _centroid(mask: np.ndarray) -> np.ndarray:
  ys, xs = np.nonzero(mask)
  return np.array([xs.mean(), ys.mean()])


def test_eye_centres_are_the_means_of_the_eye_outlines():
  points = np.zeros((68, 2))
  points[36:42] = [[10, 20], [12, 20], [14, 20], [10, 22], [12, 22], [14, 22]]
  points[42:48] = [[50, 30], [52, 30], [54, 30], [50, 32], [52, 32], [54, 32]]
  left, right = faces.eye_centres(points)
  np.testing.assert_allclose(left, [12, 21])
  np.testing.assert_allclose(right, [52, 31])
  with pytest.raises(ValueError, match=r'68 \(x, y\) landmarks, got an array of shape \(67, 2\)'):
    faces.eye_centres(points[:67])


def test_align_by_eyes_puts_tilted_eyes_level_at_the_canonical_places():
  image = np.zeros((200, 300, 3), np.uint8)
  left, right = np.array([90.0, 120.0]), np.array([170.0, 90.0])  # tilted by about 20 degrees
  for x, y in (left, right):
    image[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
  size = 100
  out = faces.align_by_eyes(image, left, right, size)
  assert out.shape == (size, size, 3) and out.dtype == np.uint8
  bright = out[..., 0] > 100
  half = size // 2
  np.testing.assert_allclose(_centroid(bright[:, :half]),
                             [(0.5 - faces.EYE_GAP / 2) * size, faces.EYE_Y * size], atol=1.0)
  np.testing.assert_allclose(_centroid(bright[:, half:]) + [half, 0],
                             [(0.5 + faces.EYE_GAP / 2) * size, faces.EYE_Y * size], atol=1.0)


def test_crop_square_grows_the_box_by_the_margin():
  image = np.zeros((100, 120, 3), np.uint8)
  image[30:50, 40:60] = 255  # the box (x=40, y=30, w=20, h=20)
  out = faces.crop_square(image, (40, 30, 20, 20), size=80, margin=0.5)
  # The square is 40 wide around the box centre, scaled by 2: the box fills the middle 40x40 of the crop.
  assert out.shape == (80, 80, 3)
  assert (out[22:58, 22:58] == 255).all()
  assert (out[:18] == 0).all() and (out[62:] == 0).all() and (out[:, :18] == 0).all() and (out[:, 62:] == 0).all()


def test_crop_square_pads_outside_the_image_with_black():
  rng = np.random.default_rng(0)
  image = rng.integers(1, 256, (50, 50, 3), dtype=np.uint8)
  out = faces.crop_square(image, (0, 0, 20, 20), size=40, margin=0.5)  # the square spans -10..30
  assert (out[:10] == 0).all() and (out[:, :10] == 0).all()
  np.testing.assert_array_equal(out[10:, 10:], image[:30, :30])


def test_centre_crop_takes_the_central_square():
  image = np.random.default_rng(1).integers(0, 256, (60, 100, 3), dtype=np.uint8)
  np.testing.assert_array_equal(faces.centre_crop(image, 60), image[:, 20:80])
  np.testing.assert_array_equal(faces.align(image, 'none', 60), image[:, 20:80])


def test_haar_finds_a_drawn_face_and_reports_none_on_a_blank_frame():
  face = fx.drawn_face(240, 320, cx=190, cy=110, scale=0.9)
  box = faces.detect_face(face)
  assert box is not None
  x, y, w, h = box
  assert abs(x + w / 2 - 190) < 10 and abs(y + h / 2 - 110) < 15 and 80 < w < 180
  crop = faces.align(face, 'haar', 96, margin=0.2)
  assert crop.shape == (96, 96, 3)
  np.testing.assert_array_equal(crop, faces.crop_square(face, box, 96, 0.2))
  blank = np.full((240, 320, 3), 60, np.uint8)
  assert faces.detect_face(blank) is None
  assert faces.align(blank, 'haar', 96) is None


def test_align_rejects_unknown_methods_and_missing_landmarks():
  image = np.zeros((10, 10, 3), np.uint8)
  with pytest.raises(ValueError, match="Unknown alignment 'mtcnn'"):
    faces.align(image, 'mtcnn', 8)
  with pytest.raises(ValueError, match='needs the frame'):
    faces.align(image, 'landmarks', 8)
