"""Procedural face photographs for the built-in synthetic dataset.

A photograph is drawn from three plain values:

- `Identity`: who the face is (head shape, skin, hair, the size and placement of eyes, brows, nose and mouth).
  It varies a lot between people; it is what a face-recognition net learns to see.
- an expression vector (one float per `EXPRESSION_PARAMS` entry): facial-action-like deformations, in the
  spirit of FACS action units, that move a few features by a few percent of the face. Each person has a resting
  face and poses each expression their own way (`sample_posing`).
- `Nuisance`: what changes from one photograph to the next (in-plane head roll, framing, light, background,
  clothes, sensor noise).

`render(identity, expression, nuisance, size)` is a pure function: the same arguments give the same pixels.
Shapes are drawn with PIL at `SUPERSAMPLE` times the output size and box-filtered down, which anti-aliases them.
Geometry is in face units: the head is centred at (0.5, 0.5) and about 0.75 tall; the photograph frames it
`CROP_ZOOM` times larger, cutting off the top of the hair, as the face crops of real expression datasets do.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from PIL import Image, ImageDraw

EXPRESSIONS = ('neutral', 'anger', 'contempt', 'disgust', 'fear', 'happy', 'sadness', 'surprise')

EXPRESSION_PARAMS = (
    'mouth_curve',    # AU12 lip-corner puller (+) / AU15 lip-corner depressor (-)
    'mouth_open',     # AU25-27 lips part, jaw drops
    'mouth_stretch',  # AU20 lip stretcher (+) / rounding into an 'O' (-)
    'mouth_asym',     # AU14 on one side only: the contempt smirk
    'lip_press',      # AU23-24 lips tighten and thin
    'brow_raise',     # AU1+2 brows up (+) / AU4 brows down (-)
    'brow_inner',     # inner brow corners down and together (+, AU4) / up (-, AU1)
    'eye_open',       # AU5 upper lid raiser (+) / AU6-7 cheek raiser and lid tightener (-)
    'nose_wrinkle',   # AU9-10 nose wrinkler and upper-lip raiser
)

# Apex of each prototypical expression (Ekman & Friesen's action units, as posed in CK+), one row per
# `EXPRESSIONS` entry. Pairs that share units (fear/surprise: raised brows, wide eyes, open mouth;
# anger/disgust: lowered brows; sadness/fear: raised inner brows) stay confusable at low intensity.
PROTOTYPES = np.array([
    # curve  open  stretch  asym  press  raise  inner   eye  wrinkle
    [+0.00, 0.00, +0.00, 0.00, 0.00, +0.00, +0.00, +0.00, 0.00],  # neutral
    [-0.25, 0.00, -0.10, 0.00, 0.85, -0.60, +0.90, +0.15, 0.00],  # anger
    [+0.10, 0.00, +0.00, 0.90, 0.20, +0.00, +0.00, -0.05, 0.00],  # contempt
    [-0.35, 0.15, +0.00, 0.00, 0.00, -0.45, +0.45, -0.45, 1.00],  # disgust
    [-0.20, 0.45, +0.75, 0.00, 0.00, +0.70, -0.60, +0.85, 0.00],  # fear
    [+1.00, 0.30, +0.45, 0.00, 0.00, +0.05, +0.00, -0.35, 0.00],  # happy
    [-0.75, 0.00, -0.05, 0.00, 0.20, +0.05, -0.90, -0.30, 0.00],  # sadness
    [+0.00, 1.00, -0.35, 0.00, 0.00, +1.00, -0.15, +1.00, 0.00],  # surprise
], dtype=np.float64)

RESTING_SPREAD = 0.12   # std of a person's resting face around the population's neutral
POSING_SCALE = (0.7, 1.25)  # how strongly a person poses an expression, relative to the prototype
POSING_SPREAD = 0.12    # std of a person's idiosyncratic deviation from each prototype
POSE_JITTER = 0.04      # std of the difference between two poses of the same expression by the same person

# How far each action moves the face at strength 1 (a posed apex), in face units (the head is ~0.75 tall,
# the eyes ~0.22 apart) or relative to the feature's size. Posed apexes are exaggerated: a surprised brow
# rises by about a quarter of the eye distance, a smile lifts the mouth corners about as much.
BROW_RAISE = 0.06
BROW_INNER = 0.055
MOUTH_CORNER = 0.06
MOUTH_STRETCH = 0.35  # relative widening
MOUTH_GAP = 0.1
JAW_DROP = 0.05
LID_RAISE = 0.9       # relative change of the upper lid's height

SUPERSAMPLE = 4
CROP_ZOOM = 1.2

_SKIN_DARK = np.array([88., 56., 40.])
_SKIN_LIGHT = np.array([246., 212., 186.])
_HAIR_COLOURS = np.array([
    [22., 18., 16.],     # black
    [58., 38., 26.],     # dark brown
    [108., 72., 42.],    # brown
    [142., 70., 34.],    # auburn
    [204., 168., 104.],  # blond
    [150., 148., 146.],  # grey
])
_HAIR_WEIGHTS = np.array([0.3, 0.25, 0.18, 0.07, 0.12, 0.08])
_IRIS_COLOURS = np.array([
    [52., 32., 22.], [96., 62., 36.], [110., 96., 52.], [70., 110., 70.], [70., 110., 160.], [110., 120., 130.],
])
_LIP_RED = np.array([176., 72., 84.])
_BROW_DARK = np.array([45., 32., 26.])  # brows are darker than the hair, fair hair most of all
HAIR_STYLES = ('short', 'long', 'receding', 'fringe', 'curly')
# Forehead height above the brows (face units): a fringe hangs low, a receding hairline sits high.
_HAIRLINES = {'receding': (0.17, 0.24), 'fringe': (0.045, 0.065)}
_HAIRLINE = (0.09, 0.15)


@dataclasses.dataclass(frozen=True)
class Identity:
  """What makes a face someone's: every field is fixed for a person and varies between people."""
  face_width: float       # half-width of the head
  face_height: float      # half-height of the head
  jaw: float              # superellipse exponent of the lower face: < 2 pointed chin, > 2 square jaw
  skin: tuple[float, float, float]
  hair: tuple[float, float, float]
  hair_style: int         # index into HAIR_STYLES
  hair_volume: float      # how far the hair stands off the scalp, relative to the head size
  hair_length: float      # how far long hair falls below the head centre, relative to the head height
  hairline: float         # forehead height above the brows
  hair_part: float        # tilt of the hairline, a side parting
  curl_phase: float       # where the curls sit around the head
  ear_size: float
  eye_spacing: float      # half the distance between the eye centres
  eye_size: float         # half-width of an eye
  eye_shape: float        # eye opening height over half-width
  eye_y: float
  iris: tuple[float, float, float]
  brow_thickness: float
  brow_gap: float         # between the top of the eye and the brow
  brow_arch: float
  nose_length: float      # from the eye line to the bottom of the nose
  nose_width: float       # half-width of the nostril wings
  philtrum: float         # from the bottom of the nose to the mouth
  mouth_width: float      # half-width of the mouth
  lip_thickness: float
  lip: tuple[float, float, float]
  age: float              # depth of the permanent folds, 0..1
  beard: float            # stubble density, 0 for most people

  def vector(self) -> np.ndarray:
    """All fields as one flat float vector (colours expanded)."""
    return np.hstack([np.ravel(v) for v in dataclasses.astuple(self)]).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class Nuisance:
  """What changes between two photographs of the same posed face. The defaults are a clean studio shot."""
  rotation: float = 0.0                  # in-plane head roll, degrees
  scale: float = 1.0
  shift: tuple[float, float] = (0.0, 0.0)
  brightness: float = 1.0
  contrast: float = 1.0
  white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
  light_angle: float = 0.0               # direction the light comes from, radians
  light_strength: float = 0.0            # relative brightness change from one side of the image to the other
  background: tuple[float, float, float] = (128.0, 128.0, 128.0)
  texture: float = 0.0                   # amplitude of the blotchy background texture, 0..255 units
  shirt: tuple[float, float, float] = (70.0, 80.0, 100.0)
  noise: float = 0.0                     # std of Gaussian sensor noise, 0..255 units
  noise_seed: int = 0                    # seeds the background texture and the sensor noise


def sample_identity(rng: np.random.Generator) -> Identity:
  """Draws a person. Ranges are wide on purpose: people differ far more than one person's expressions do."""
  face_width = rng.uniform(0.25, 0.33)
  hair_style = int(rng.integers(len(HAIR_STYLES)))
  curly = HAIR_STYLES[hair_style] == 'curly'
  skin = _SKIN_DARK + rng.uniform() ** 0.8 * (_SKIN_LIGHT - _SKIN_DARK) + rng.normal(0.0, [6.0, 5.0, 5.0])
  # Hair varies in lightness within its shade; a per-channel jitter would turn dark hair green or purple.
  hair_shade = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)]
  hair = hair_shade * rng.uniform(0.8, 1.2) + rng.normal(0.0, 3.0, 3)
  iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.normal(0.0, 6.0, 3)
  lip = (skin + rng.uniform(0.4, 0.7) * (_LIP_RED - skin)) * rng.uniform(0.75, 0.9)
  return Identity(
      face_width=face_width,
      face_height=rng.uniform(0.33, 0.40),
      jaw=rng.uniform(1.6, 3.0),
      skin=_colour(skin),
      hair=_colour(hair),
      hair_style=hair_style,
      hair_volume=rng.uniform(0.15, 0.28) if curly else rng.uniform(0.02, 0.09),
      hair_length=rng.uniform(0.5, 1.3),
      hairline=rng.uniform(*_HAIRLINES.get(HAIR_STYLES[hair_style], _HAIRLINE)),
      hair_part=rng.uniform(-0.03, 0.03),
      curl_phase=rng.uniform(0.0, 2 * np.pi),
      ear_size=rng.uniform(0.05, 0.075),
      eye_spacing=rng.uniform(0.095, 0.13) * face_width / 0.29,
      eye_size=rng.uniform(0.042, 0.06),
      eye_shape=rng.uniform(0.38, 0.58),
      eye_y=rng.uniform(0.43, 0.48),
      iris=_colour(iris),
      brow_thickness=rng.uniform(0.015, 0.03),
      brow_gap=rng.uniform(0.022, 0.042),
      brow_arch=rng.uniform(0.0, 0.02),
      nose_length=rng.uniform(0.09, 0.14),
      nose_width=rng.uniform(0.03, 0.052),
      philtrum=rng.uniform(0.035, 0.055),
      mouth_width=rng.uniform(0.075, 0.112),
      lip_thickness=rng.uniform(0.013, 0.026),
      lip=_colour(lip),
      age=rng.uniform(0.0, 1.0),
      beard=rng.uniform(0.3, 0.9) if rng.uniform() < 0.12 else 0.0,
  )


def sample_posing(rng: np.random.Generator) -> np.ndarray:
  """Draws how one person's face looks at rest and at the apex of each expression.

  Returns an array (len(EXPRESSIONS), len(EXPRESSION_PARAMS)): row 0 is the resting face, row e the apex of
  expression e. Each apex is the resting face plus the prototype, scaled and perturbed per person, so two
  people's 'fear' differ and a classifier has to generalise across posers.
  """
  resting = rng.normal(0.0, RESTING_SPREAD, len(EXPRESSION_PARAMS))
  scale = rng.uniform(*POSING_SCALE, size=(len(EXPRESSIONS), 1))
  style = rng.normal(0.0, POSING_SPREAD, PROTOTYPES.shape)
  apex = scale * PROTOTYPES + style
  apex[0] = 0.0
  return resting + apex


def sample_expression(posing: np.ndarray, expression: int, intensity: float,
                      rng: np.random.Generator) -> np.ndarray:
  """One pose: the person's resting face moved `intensity` (0..1) of the way to their apex of `expression`."""
  resting, apex = posing[0], posing[expression]
  return resting + intensity * (apex - resting) + rng.normal(0.0, POSE_JITTER, resting.shape)


@dataclasses.dataclass(frozen=True)
class Conditions:
  """How much the photographs of a dataset vary: the ranges `sample_nuisance` draws from."""
  roll: float                         # std of the in-plane head roll, degrees (clipped at 2.5 std)
  reframe: float                      # largest relative zoom of the crop; shifts go up to half of it
  exposure: float                     # largest relative change of brightness and of contrast
  light: float                        # largest strength of the directional light gradient
  colour_cast: float                  # std of the white-balance gains
  wall: tuple[float, float]           # range of the background's grey level
  tint: float                         # std of the background's departure from grey
  texture: float                      # largest amplitude of the background texture
  noise: float                        # largest std of the sensor noise


# Posed in a studio, as CK+ was: frontal light, a plain wall, a face crop that barely moves.
LAB = Conditions(roll=1.0, reframe=0.03, exposure=0.08, light=0.12, colour_cast=0.015, wall=(120.0, 215.0),
                 tint=6.0, texture=5.0, noise=3.0)
# Photographs from the web, as face-recognition sets are: any light, any wall, a looser crop.
WILD = Conditions(roll=2.0, reframe=0.05, exposure=0.2, light=0.4, colour_cast=0.04, wall=(35.0, 220.0),
                  tint=18.0, texture=15.0, noise=6.0)


def sample_nuisance(rng: np.random.Generator, conditions: Conditions = WILD) -> Nuisance:
  """Draws the conditions of one photograph: roll of a few degrees, slight reframing, uneven light.

  The framing jitter is that of a face detector's crop: a few percent of the face, not more.
  """
  c = conditions
  return Nuisance(
      rotation=float(np.clip(rng.normal(0.0, c.roll), -2.5 * c.roll, 2.5 * c.roll)),
      scale=rng.uniform(1.0 - c.reframe, 1.0 + c.reframe),
      shift=tuple(rng.uniform(-c.reframe / 2, c.reframe / 2, 2)),
      brightness=rng.uniform(1.0 - c.exposure, 1.0 + c.exposure),
      contrast=rng.uniform(1.0 - c.exposure, 1.0 + c.exposure),
      white_balance=tuple(1.0 + rng.normal(0.0, c.colour_cast, 3)),
      light_angle=rng.uniform(0.0, 2 * np.pi),
      light_strength=rng.uniform(0.0, c.light),
      background=_colour(rng.uniform(*c.wall) + rng.normal(0.0, c.tint, 3)),
      texture=rng.uniform(0.0, c.texture),
      shirt=_colour(rng.uniform(20.0, 230.0, 3)),
      noise=rng.uniform(1.0, c.noise),
      noise_seed=int(rng.integers(2**31)),
  )


def render(identity: Identity, expression: np.ndarray, nuisance: Nuisance = Nuisance(),
           size: int = 64) -> np.ndarray:
  """Photographs `identity` posing `expression` under `nuisance`; returns uint8 (size, size, 3)."""
  expression = np.asarray(expression, np.float64)
  if expression.shape != (len(EXPRESSION_PARAMS),):
    raise ValueError(f'expression must have shape ({len(EXPRESSION_PARAMS)},), one value per EXPRESSION_PARAMS '
                     f'entry, got {expression.shape}')
  canvas_size = SUPERSAMPLE * size
  noise_rng = np.random.default_rng(nuisance.noise_seed)
  canvas = _background(nuisance, size, noise_rng)
  pen = _Pen()
  _draw_face(pen, identity, dict(zip(EXPRESSION_PARAMS, expression)), nuisance)
  zoom = CROP_ZOOM * nuisance.scale
  pen.draw_on(canvas, _placement(nuisance, zoom, canvas_size), canvas_size * zoom)
  photo = np.asarray(canvas.reduce(SUPERSAMPLE), np.float32)  # a box filter: each pixel averages its 4x4 samples
  return _expose(photo, nuisance, noise_rng)


def _colour(rgb) -> tuple[float, float, float]:
  return tuple(float(c) for c in np.clip(rgb, 0.0, 255.0))


def _clamp(x: float, low: float, high: float) -> float:
  return min(max(x, low), high)


def _rgba(rgb, alpha: float = 1.0, shade: float = 1.0) -> tuple[int, int, int, int]:
  """A PIL fill: `rgb` darkened by `shade`, with opacity `alpha` in 0..1."""
  r, g, b = (int(_clamp(c * shade, 0.0, 255.0)) for c in rgb)
  return r, g, b, int(_clamp(alpha, 0.0, 1.0) * 255)


class _Pen:
  """Records shapes in face units, then draws them in order through the photograph's framing.

  Recording first lets all points be framed in one matrix product instead of one per shape.
  """

  def __init__(self):
    self._shapes = []  # (points, colour, line width or None for a filled polygon)

  def fill(self, points: np.ndarray, colour) -> None:
    self._shapes.append((points, colour, None))

  def line(self, points: np.ndarray, colour, width: float) -> None:
    self._shapes.append((points, colour, width))

  def draw_on(self, canvas: Image.Image, place, pixels_per_unit: float) -> None:
    draw = ImageDraw.Draw(canvas, 'RGBA')
    ends = np.cumsum([len(points) for points, _, _ in self._shapes])[:-1]
    placed = np.split(place(np.concatenate([points for points, _, _ in self._shapes])), ends)
    for (_, colour, width), xy in zip(self._shapes, placed):
      if width is None:
        draw.polygon(xy.ravel().tolist(), fill=colour)
      else:
        draw.line(xy.ravel().tolist(), fill=colour, width=max(1, round(width * pixels_per_unit)), joint='curve')


def _placement(nuisance: Nuisance, zoom: float, canvas_size: int):
  """Maps face units to canvas pixels: roll and zoom about the image centre, then shift."""
  angle = np.deg2rad(nuisance.rotation)
  rotation = zoom * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  centre = np.array([0.5, 0.5])
  offset = centre + np.asarray(nuisance.shift)

  def place(points: np.ndarray) -> np.ndarray:
    return ((points - centre) @ rotation.T + offset) * canvas_size

  return place


def _background(nuisance: Nuisance, size: int, rng: np.random.Generator) -> Image.Image:
  """A wall: the background colour with smooth blotches, upsampled from a coarse random grid.

  It is smooth at the output size already, so it is upsampled to the canvas by pixel replication, which the
  final box filter undoes exactly; that is several times cheaper than interpolating on the big canvas.
  """
  blotches = np.asarray(nuisance.background) + nuisance.texture * rng.standard_normal((5, 5, 3))
  coarse = Image.fromarray(np.clip(blotches, 0, 255).astype(np.uint8))
  wall = coarse.resize((size, size), Image.Resampling.BICUBIC)
  return wall.resize((SUPERSAMPLE * size, SUPERSAMPLE * size), Image.Resampling.NEAREST)


def _expose(photo: np.ndarray, nuisance: Nuisance, rng: np.random.Generator) -> np.ndarray:
  """The camera: contrast, brightness, white balance, a directional light gradient and sensor noise."""
  size = photo.shape[0]
  mean = photo.mean()
  photo = (photo - mean) * nuisance.contrast + mean
  coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
  gradient = (np.cos(nuisance.light_angle) * coords[None, :] + np.sin(nuisance.light_angle) * coords[:, None])
  gain = nuisance.brightness * (1.0 + nuisance.light_strength * gradient)
  photo = photo * gain[:, :, None] * np.asarray(nuisance.white_balance, np.float32)
  photo = photo + nuisance.noise * rng.standard_normal(photo.shape, dtype=np.float32)
  return np.clip(np.round(photo), 0, 255).astype(np.uint8)


# Rendering is dominated by per-shape numpy overhead, so the fixed sample grids are computed once.
@functools.cache
def _grid(start: float, stop: float, n: int, endpoint: bool = True) -> np.ndarray:
  grid = np.linspace(start, stop, n, endpoint=endpoint)
  grid.flags.writeable = False
  return grid


@functools.cache
def _unit_circle(n: int) -> np.ndarray:
  t = _grid(0.0, 2 * np.pi, n, endpoint=False)
  circle = _arc(np.cos(t), np.sin(t))
  circle.flags.writeable = False
  return circle


@functools.cache
def _bezier_weights(n: int) -> np.ndarray:
  t = _grid(0.0, 1.0, n)
  weights = np.stack([(1 - t) ** 2, 2 * t * (1 - t), t ** 2], axis=1)
  weights.flags.writeable = False
  return weights


def _arc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  points = np.empty((len(x), 2))
  points[:, 0], points[:, 1] = x, y
  return points


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
  return _unit_circle(n) * (rx, ry) + (cx, cy)


def _quadratic(p0, p1, p2, n: int = 10) -> np.ndarray:
  """Points on the quadratic Bezier curve from p0 to p2 with control point p1."""
  return _bezier_weights(n) @ np.array([p0, p1, p2], dtype=np.float64)


def _head_outline(identity: Identity, jaw_drop: float, n: int = 48) -> np.ndarray:
  """Superellipse head: a rounded skull on top, the person's jaw shape below; an open mouth drops the chin."""
  cos, sin = _unit_circle(n).T
  lower = sin > 0
  exponent = np.where(lower, identity.jaw, 2.3)
  half_height = np.where(lower, identity.face_height + jaw_drop, identity.face_height)
  x = 0.5 + identity.face_width * np.sign(cos) * np.abs(cos) ** (2 / exponent)
  y = 0.5 + half_height * np.sign(sin) * np.abs(sin) ** (2 / exponent)
  return _arc(x, y)


def _brow_line(identity: Identity) -> float:
  return identity.eye_y - identity.eye_size * identity.eye_shape - identity.brow_gap


def _hair_top(identity: Identity, bumpy: bool, n: int = 40) -> np.ndarray:
  """The outer edge of the hair from the left temple, over the crown, to the right temple."""
  side = identity.eye_y - 0.02
  top = 0.5 - identity.face_height * (1 + identity.hair_volume)
  t = _grid(np.pi, 2 * np.pi, n)
  radius = 1.0 + (0.035 * np.sin(9 * t + identity.curl_phase) if bumpy else 0.0)
  x = 0.5 + identity.face_width * (1 + identity.hair_volume) * np.cos(t) * radius
  y = side + (side - top) * np.sin(t) * radius
  return _arc(x, y)


def _draw_back_hair(pen: _Pen, identity: Identity, colour) -> None:
  """Hair that falls behind the head: long hair to the shoulders, curls around the face."""
  style = HAIR_STYLES[identity.hair_style]
  if style not in ('long', 'curly'):
    return
  top = _hair_top(identity, bumpy=style == 'curly')
  width = identity.face_width * (1.12 + identity.hair_volume)
  bottom = 0.5 + identity.face_height * (identity.hair_length if style == 'long' else 0.35)
  hem = _quadratic((0.5 + width, bottom), (0.5, bottom + 0.05), (0.5 - width, bottom))
  pen.fill(np.concatenate([top, hem]), colour)


def _draw_hair_cap(pen: _Pen, identity: Identity, colour) -> None:
  """Hair over the scalp, bounded below by the hairline across the forehead."""
  style = HAIR_STYLES[identity.hair_style]
  side = identity.eye_y - 0.02
  hairline_y = max(_brow_line(identity) - identity.hairline, 0.5 - identity.face_height + 0.02)
  u = _grid(1.0, -1.0, 25)
  # A fringe is cut straight; a receding line dips at the temples; otherwise it rounds down into them.
  power = {'fringe': 8.0, 'receding': 1.3}.get(style, 2.5)
  hairline = hairline_y + (side - hairline_y) * np.abs(u) ** power + identity.hair_part * u
  if style == 'fringe':
    hairline = hairline + 0.006 * (np.arange(u.size) % 2)
  inner = _arc(0.5 + 0.93 * identity.face_width * u, hairline)
  pen.fill(np.concatenate([_hair_top(identity, bumpy=style == 'curly'), inner]), colour)


def _draw_eye(pen: _Pen, identity: Identity, x: float, opening: float) -> None:
  """An almond: upper lid raised or lowered by `opening`, the iris cut by the lids, a dark lash line."""
  y, w = identity.eye_y, identity.eye_size
  upper_h = w * identity.eye_shape * _clamp(1.0 + LID_RAISE * opening, 0.12, 2.2)
  lower_h = w * identity.eye_shape * 0.75 * _clamp(1.0 + 0.25 * opening, 0.5, 1.5)
  u = _grid(-1.0, 1.0, 13)
  bulge = 1.0 - u ** 2
  upper = _arc(x + w * u, y - upper_h * bulge)
  lower = _arc(x + w * u, y + lower_h * bulge)
  pen.fill(np.concatenate([upper, lower[::-1]]), _rgba((236, 232, 226)))
  for radius, colour in ((0.45 * w, identity.iris), (0.2 * w, (15, 12, 12))):
    ring = _ellipse(x, y, radius, radius, n=16)
    dx = (ring[:, 0] - x) / w
    lid_bulge = np.clip(1.0 - dx ** 2, 0.0, None)
    ring[:, 1] = np.clip(ring[:, 1], y - upper_h * lid_bulge, y + lower_h * lid_bulge)
    pen.fill(ring, _rgba(colour))
  pen.line(upper, _rgba((35, 25, 25)), 0.0065)
  pen.line(lower, _rgba(identity.skin, 0.6, 0.6), 0.003)
  crease = _arc(x + 0.9 * w * u, y - upper_h * bulge - 0.012 * (0.3 + bulge))
  pen.line(crease, _rgba(identity.skin, 0.35, 0.7), 0.004)


def _draw_brow(pen: _Pen, identity: Identity, side: int, raise_: float, inner: float, colour) -> None:
  """A tapered stroke from the inner to the outer end; anger pulls the inner end down and in, sadness up."""
  base = _brow_line(identity) - BROW_RAISE * raise_
  x_inner = 0.5 + side * (identity.eye_spacing - 0.75 * identity.eye_size - 0.012 * max(inner, 0.0))
  x_outer = 0.5 + side * (identity.eye_spacing + 1.15 * identity.eye_size)
  p_inner = (x_inner, base + BROW_INNER * inner)
  p_outer = (x_outer, base + 0.008)
  p_arch = ((x_inner + x_outer) / 2, base - identity.brow_arch - 0.012)
  centre = _quadratic(p_inner, p_arch, p_outer, n=12)
  tangent = np.gradient(centre, axis=0)
  normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
  normal /= np.linalg.norm(normal, axis=1, keepdims=True)
  half = 0.5 * identity.brow_thickness * _grid(1.0, 0.45, len(centre))[:, None]
  pen.fill(np.concatenate([centre + half * normal, (centre - half * normal)[::-1]]), colour)


def _mouth_width(identity: Identity, e: dict[str, float]) -> float:
  return identity.mouth_width * _clamp(1.0 + MOUTH_STRETCH * e['mouth_stretch'], 0.6, 1.6)


def _draw_mouth(pen: _Pen, identity: Identity, e: dict[str, float], y: float) -> None:
  """Lips around a mouth line whose corners rise (smile), fall (sadness) or rise on one side (contempt)."""
  width = _mouth_width(identity, e)
  gap = MOUTH_GAP * max(e['mouth_open'], 0.0)
  thickness = identity.lip_thickness * _clamp(1.0 - 0.6 * e['lip_press'], 0.25, 1.5)
  left = MOUTH_CORNER * (-e['mouth_curve'] + 0.2 * e['mouth_asym'])
  right = MOUTH_CORNER * (-e['mouth_curve'] - e['mouth_asym'])
  u = _grid(-1.0, 1.0, 21)
  x = 0.5 + width * u
  # The line bends through the corners; a smile makes it a U, a frown an arch.
  line = y + u ** 2 * (left * (1 - u) / 2 + right * (1 + u) / 2) - 0.012 * max(e['nose_wrinkle'], 0.0)
  opening = np.sqrt(1.0 - u ** 2)
  upper_inner = line - 0.4 * gap * opening
  lower_inner = line + 0.6 * gap * opening
  cupid = 1.0 - 0.35 * np.exp(-(u / 0.12) ** 2)
  upper_outer = upper_inner - thickness * opening ** 0.7 * cupid
  lower_outer = lower_inner + 1.3 * thickness * opening ** 0.6
  pen.fill(np.concatenate([_arc(x, upper_outer), _arc(x, lower_outer)[::-1]]), _rgba(identity.lip))
  if gap > 0.004:
    pen.fill(np.concatenate([_arc(x, upper_inner), _arc(x, lower_inner)[::-1]]), _rgba((70, 24, 30)))
    teeth = np.minimum(upper_inner + 0.35 * gap * opening + 0.004, lower_inner)
    pen.fill(np.concatenate([_arc(x, upper_inner), _arc(x, teeth)[::-1]]), _rgba((236, 232, 218)))
  pen.line(_arc(x, line), _rgba(identity.lip, 0.9, 0.4), 0.009)


def _draw_head(pen: _Pen, identity: Identity, jaw_drop: float, nose_y: float, mouth_y: float,
               mouth_corner: float, shirt) -> None:
  """Everything but the features: hair, shoulders, neck, ears, the head itself and any beard."""
  skin, hair = identity.skin, _rgba(identity.hair)
  _draw_back_hair(pen, identity, hair)
  pen.fill(_ellipse(0.5, 0.5 + identity.face_height + 0.35, 0.5, 0.28), _rgba(shirt))
  neck = 0.55 * identity.face_width
  pen.fill(np.array([(0.5 - neck, 0.6), (0.5 + neck, 0.6), (0.5 + 1.1 * neck, 1.1), (0.5 - 1.1 * neck, 1.1)]),
           _rgba(skin, shade=0.82))
  for side in (-1, 1):
    pen.fill(_ellipse(0.5 + side * 0.97 * identity.face_width, identity.eye_y + 0.035,
                      0.35 * identity.ear_size, identity.ear_size, n=16), _rgba(skin, shade=0.9))
  outline = _head_outline(identity, jaw_drop)
  pen.fill(outline, _rgba(skin))
  if identity.beard > 0:
    # The outline runs right -> chin -> left along its lower half; close it along the upper lip.
    jaw = outline[outline[:, 1] > mouth_y - 0.02]
    moustache = np.array([(0.5 - mouth_corner - 0.02, nose_y + 0.025), (0.5, nose_y + 0.014),
                          (0.5 + mouth_corner + 0.02, nose_y + 0.025)])
    pen.fill(np.concatenate([jaw, moustache]), _rgba(identity.hair, 0.5 * identity.beard, 0.8))
  _draw_hair_cap(pen, identity, hair)


def _draw_folds(pen: _Pen, identity: Identity, e: dict[str, float], nose_y: float, mouth_y: float,
                mouth_corner: float) -> None:
  """Permanent folds deepen with age; a smile or a nose wrinkle deepens the nasolabial folds, raised brows
  crease the forehead, lowered inner brows crease the glabella."""
  skin = identity.skin
  fold = 0.15 * identity.age + 0.6 * max(e['mouth_curve'], 0.0) + 0.5 * max(e['nose_wrinkle'], 0.0)
  for side in (-1, 1):
    pen.line(_quadratic((0.5 + side * (identity.nose_width + 0.012), nose_y - 0.012),
                        (0.5 + side * (mouth_corner + 0.03), nose_y + 0.01),
                        (0.5 + side * (mouth_corner + 0.018), mouth_y + 0.035), n=8),
             _rgba(skin, min(fold, 0.8), 0.6), 0.008)
  brow_y = _brow_line(identity)
  forehead = 1.2 * max(e['brow_raise'] - 0.25, 0.0) + 0.12 * identity.age
  for k in range(3):
    y = brow_y - BROW_RAISE * e['brow_raise'] - 0.03 - 0.018 * k
    if y > brow_y - identity.hairline + 0.01:
      pen.line(_quadratic((0.42, y + 0.006), (0.5, y - 0.006), (0.58, y + 0.006), n=6),
               _rgba(skin, min(forehead, 0.7), 0.65), 0.007)
  glabella = min(1.2 * max(e['brow_inner'] - 0.2, 0.0), 0.7)
  for side in (-1, 1):
    pen.line(np.array([(0.5 + side * 0.012, brow_y - 0.01), (0.5 + side * 0.01, identity.eye_y - 0.01)]),
             _rgba(skin, glabella, 0.6), 0.007)


def _draw_nose(pen: _Pen, identity: Identity, wrinkle: float, nose_y: float) -> None:
  """A shadow down one side of the bridge, the wings and nostrils; disgust wrinkles the bridge."""
  skin = identity.skin
  pen.line(np.array([(0.5 - 0.02, identity.eye_y), (0.5 - 0.022, nose_y - 0.03)]), _rgba(skin, 0.25, 0.6), 0.006)
  wing = identity.nose_width * (1.0 + 0.1 * wrinkle)
  for side in (-1, 1):
    pen.line(_quadratic((0.5 + side * wing, nose_y - 0.02), (0.5 + side * 0.8 * wing, nose_y + 0.015),
                        (0.5, nose_y + 0.01), n=6), _rgba(skin, 0.5, 0.6), 0.006)
    pen.fill(_ellipse(0.5 + side * 0.45 * wing, nose_y + 0.002, 0.3 * wing, 0.14 * wing, n=10),
             _rgba(skin, 0.8, 0.4))
  for k in range(3):
    y = identity.eye_y + 0.005 + 0.013 * k
    pen.line(_quadratic((0.5 - 0.025, y), (0.5, y - 0.006), (0.5 + 0.025, y), n=5),
             _rgba(skin, 0.7 * min(wrinkle, 1.0), 0.6), 0.007)


def _draw_face(pen: _Pen, identity: Identity, e: dict[str, float], nuisance: Nuisance) -> None:
  jaw_drop = JAW_DROP * max(e['mouth_open'], 0.0)
  wrinkle = max(e['nose_wrinkle'], 0.0)
  nose_y = identity.eye_y + identity.nose_length - 0.01 * wrinkle
  mouth_y = identity.eye_y + identity.nose_length + identity.philtrum + 0.4 * jaw_drop
  mouth_corner = _mouth_width(identity, e)
  _draw_head(pen, identity, jaw_drop, nose_y, mouth_y, mouth_corner, nuisance.shirt)
  _draw_folds(pen, identity, e, nose_y, mouth_y, mouth_corner)
  for side in (-1, 1):
    _draw_eye(pen, identity, 0.5 + side * identity.eye_spacing, e['eye_open'])
  brow_colour = _rgba(0.6 * np.asarray(identity.hair) + 0.4 * _BROW_DARK)
  for side in (-1, 1):
    _draw_brow(pen, identity, side, e['brow_raise'], e['brow_inner'], brow_colour)
  _draw_nose(pen, identity, wrinkle, nose_y)
  _draw_mouth(pen, identity, e, mouth_y)
