"""Oulu-CASIA, visible light (VL), strong illumination, 6 classes (anger, disgust, fear, happy, sadness, surprise),
10 subject-independent folds: the last 3 frames of each of the 480 sequences of 80 subjects (1440 faces, cropped by
the YuNet face detector at build time). Paper: scratch 76.87, VGG fine-tune 83.26, FN2EN 87.71.

  python -m fn2en_jax.data.build oulu_casia/vl_strong --manual_dir=$HOME/data/oulu_casia \
      --data_dir=$HOME/tensorflow_datasets
  python -m fn2en_jax.main --config=configs/oulu_casia.py --workdir=$HOME/runs/oulu_casia \
      --config.teacher.init=$HOME/face_nets/vgg_face --config.data.fold=-1

`--config.data.fold=-1` runs the 10 folds and writes kfold.md. The build step is optional: with
`--config.data.manual_dir=$HOME/data/oulu_casia` the first run builds the dataset itself. The face net:
docs/face_nets.md; hyper-parameters, reconstructed: fn2en_jax/recipe.py. On GPU/TPU add `--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  config = recipe.get_config(name='oulu_casia', config='vl_strong', num_folds=10)
  config.paper = dict(scratch=76.87, face=83.26, fn2en=87.71)
  return config
