"""Teachers are a config choice: face -> a -> b runs on tiny synthetic faces with each kind of converted face net
named by `teacher.init`, the stage-a adapter and the resizing of the teacher map taking up the difference in shape
(at 80 px, dlib's res3 4x4x16 and FaceNet's block35 7x7x16 against the student's 2x2x8: other channels and another
size; at the tiny config's 32 px, VGG's pool5 1x1x32 against the student's 1x1x8: other channels, and SFace's
conv_12 4x4x32: other channels and another size, both on the tiny run's own dataset).

The face nets have random weights (and BatchNorm statistics, where they have BatchNorm) but are written by
`face_nets.save`, as the converters write them.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import tiny_config
from fn2en_jax import experiment
from fn2en_jax.models import face_nets

TEACHERS = {
    'vgg_face': dict(kwargs=dict(width=1 / 16, fc_dim=256, input_mean=(129.19, 104.76, 93.59), input_std=1.0),
                     tap='pool5', size=32),
    # dlib's unpadded strided convs need inputs of at least 72 px.
    'dlib_resnet': dict(kwargs=dict(width=1 / 8, input_mean=(122.78, 117.0, 104.3), input_std=256.0), tap='res3',
                        size=80),
    # SFace's stride-2 convs are padded: any size goes (its dense layer is sized by the one it is saved at).
    'sface': dict(kwargs=dict(width=1 / 16, input_mean=(127.5, 127.5, 127.5), input_std=128.0), tap='conv_12',
                  size=32),
    # FaceNet's stride-2 layers are all VALID: at least 75 px. block35, its shallowest block tap, keeps stage a's
    # teacher forward (a compilation of its own) short.
    'facenet': dict(kwargs=dict(width=1 / 16), tap='block35', size=80),
}


def save_random_face_net(init: str, model: str, kwargs: dict, size: int) -> None:
  module = face_nets.MODELS[model](num_classes=1, **kwargs)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
  rng = np.random.default_rng(0)
  params = {name: jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), layer)
            for name, layer in shapes['params'].items() if name != face_nets.CLASSIFIER[model]}
  # Running means near 0 and variances near 1, as a trained net's are.
  stats = {path: (rng.normal(0, 0.1, s.shape) if path[-1] == 'mean' else rng.uniform(0.5, 1.5, s.shape))
           for path, s in traverse_util.flatten_dict(shapes.get('batch_stats', {})).items()}
  batch_stats = traverse_util.unflatten_dict({k: v.astype(np.float32) for k, v in stats.items()}) or None
  face_nets.save(init, model, kwargs, params, input_size=size, batch_stats=batch_stats)


# FaceNet's case needs about a minute (compiling its 132 convolutions, not their width): the slow tier.
@pytest.mark.parametrize('model', [pytest.param(m, marks=pytest.mark.slow) if m == 'facenet' else m
                                   for m in sorted(TEACHERS)])
def test_face_a_b_with_a_converted_teacher(tmp_path, tiny_run, model):
  size = TEACHERS[model]['size']
  save_random_face_net(str(tmp_path / 'face_net'), model, TEACHERS[model]['kwargs'], size)
  config = tiny_config.get_config()
  config.stages = ('face', 'a', 'b')
  # At the tiny config's size, the tiny run's dataset (read only); at another, one built here.
  config.data_dir = str(tiny_run[1] if size == config.data.image_size else tmp_path / 'tfds')
  config.data.update(dict(image_size=size, builder_options=dict(image_size=size)))
  config.teacher.update(dict(model=model, init=str(tmp_path / 'face_net'), tap=TEACHERS[model]['tap']))
  summaries = experiment.run(config, str(tmp_path / 'work'))
  assert list(summaries) == ['face', 'a', 'b']
  assert math.isfinite(summaries['a']['lp_loss']) and summaries['a']['lp_loss'] > 0
  assert 0 <= summaries['b']['accuracy'] <= 1
