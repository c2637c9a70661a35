"""`python -m fn2en_jax.features`: image files in, one row of a face net's tap per image out."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import roundoff
from absl import app, flags
from PIL import Image

from fn2en_jax.commands import features
from fn2en_jax.models import face_nets, preprocess
from fn2en_jax.models.vgg_face import VGGFace

KWARGS = dict(width=1 / 16, fc_dim=4096, input_mean=(129.19, 104.76, 93.59), input_std=1.0)


def run_features(*args: str) -> None:
  """The command line, in this process: absl parses the flags, then `main` runs as `app.run` would call it."""
  flags.FLAGS.unparse_flags()
  features.main(flags.FLAGS(['features', *args]))


def write_images(tmp_path, arrays) -> list[str]:
  paths = []
  for i, array in enumerate(arrays):
    paths.append(str(tmp_path / f'face{i}.png'))
    Image.fromarray(array).save(paths[-1])
  return paths


@pytest.fixture(scope='module')
def vgg_net(tmp_path_factory):
  """A thin random VGGFace at 64x64, saved as a converted face net."""
  init = str(tmp_path_factory.mktemp('vgg'))
  module = VGGFace(num_classes=5, **KWARGS)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))['params']
  rng = np.random.default_rng(0)  # NumPy draws: compiling Flax's initialisers would take longer than this test
  params = {k: jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), v)
            for k, v in shapes.items() if k != 'fc8'}
  face_nets.save(init, 'vgg_face', KWARGS, params, input_size=64)
  return init, module, params


def test_rows_are_the_flattened_tap_of_the_resized_image(tmp_path, vgg_net):
  init, module, params = vgg_net
  rng = np.random.default_rng(0)
  arrays = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)]
  paths = write_images(tmp_path, arrays)
  run_features(f'--init={init}', '--tap=pool5', f'--output={tmp_path / "f.npy"}', *paths)
  rows = np.load(tmp_path / 'f.npy')
  assert rows.shape == (2, 2 * 2 * 32)
  # The second image is resized (bilinear) to the net's 64x64 before the [-1, 1] scaling.
  inputs = np.stack([arrays[0], np.asarray(Image.fromarray(arrays[1]).resize((64, 64), Image.BILINEAR))])
  pool5 = module.apply({'params': params}, jnp.asarray(inputs, jnp.float32) / 127.5 - 1, train=False, tap='pool5')
  # The command scales in NumPy and runs the net jitted; here JAX scales and runs it op by op: the same operations,
  # the sums in other orders. Two such computations are within twice the bound of tests/roundoff.py on either.
  tap = lambda p, x: module.apply({'params': p}, preprocess.from_uint8(x), train=False, tap='pool5')
  value, error = roundoff.bound(tap, params, inputs)
  # Under 1% of the rows' size: another resize filter, or another scaling, changes them by about their size.
  assert 2 * error < 1e-2 * np.max(np.abs(value))
  roundoff.assert_within(rows, np.asarray(pool5).reshape(2, -1), 2 * error)


def test_logits_need_the_classifier(tmp_path, vgg_net):
  path = write_images(tmp_path, [np.zeros((64, 64, 3), np.uint8)])[0]
  with pytest.raises(app.UsageError, match='--keep_classifier'):
    run_features(f'--init={vgg_net[0]}', '--tap=logits', f'--output={tmp_path / "f.npy"}', path)
  assert not os.path.exists(tmp_path / 'f.npy')

