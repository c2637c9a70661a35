"""Teachers are a config choice: face -> a -> b runs on tiny synthetic faces with each kind of converted face net
named by `teacher.init`, the stage-a adapter and the resizing of the teacher map taking up the difference in shape
(VGG pool5 2x2x32 and dlib res3 4x4x16 against the student's 2x2x8).

The face nets have random weights but are written by `face_nets.save`, as the converters write them.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_config
from fn2en_jax import experiment
from fn2en_jax.models import face_nets

SIZE = 80  # dlib's unpadded strided convs need inputs of at least 72 px
TEACHERS = {
    'vgg_face': dict(kwargs=dict(width=1 / 16, fc_dim=256, input_mean=(129.19, 104.76, 93.59), input_std=1.0),
                     tap='pool5'),
    'dlib_resnet': dict(kwargs=dict(width=1 / 8, input_mean=(122.78, 117.0, 104.3), input_std=256.0), tap='res3'),
}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def save_random_face_net(init: str, model: str, kwargs: dict) -> None:
  module = face_nets.MODELS[model](num_classes=1, **kwargs)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
  rng = np.random.default_rng(0)
  params = {name: jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), layer)
            for name, layer in shapes['params'].items() if name != face_nets.CLASSIFIER[model]}
  face_nets.save(init, model, kwargs, params, input_size=SIZE)


@pytest.mark.parametrize('model', sorted(TEACHERS))
def test_face_a_b_with_a_converted_teacher(tmp_path, data_dir, model):
  save_random_face_net(str(tmp_path / 'face_net'), model, TEACHERS[model]['kwargs'])
  config = tiny_config.get_config()
  config.stages = ('face', 'a', 'b')
  config.data_dir = data_dir
  config.data.update(dict(image_size=SIZE, builder_options=dict(image_size=SIZE)))
  config.teacher.update(dict(model=model, init=str(tmp_path / 'face_net'), tap=TEACHERS[model]['tap']))
  summaries = experiment.run(config, str(tmp_path / 'work'))
  assert list(summaries) == ['face', 'a', 'b']
  assert math.isfinite(summaries['a']['lp_loss']) and summaries['a']['lp_loss'] > 0
  assert 0 <= summaries['b']['accuracy'] <= 1
