"""CK+, 6 classes (anger, disgust, fear, happy, sadness, surprise: no neutral, no contempt), 10 subject-independent
folds: the last 3 frames of each labelled sequence of those classes (927 faces). Paper: FN2EN 98.6 (the other rows
are not reported for 6 classes).

  python -m fn2en_jax.data.build ck_plus/6class --manual_dir=$HOME/data/ck_plus --data_dir=$HOME/tensorflow_datasets
  python -m fn2en_jax.main --config=configs/ck_plus_6.py --workdir=$HOME/runs/ck_plus_6 \
      --config.teacher.init=$HOME/face_nets/vgg_face --config.data.fold=-1

`--config.data.fold=-1` runs the 10 folds and writes kfold.md. The build step is optional: with
`--config.data.manual_dir=$HOME/data/ck_plus` the first run builds the dataset itself. The face net:
docs/face_nets.md; hyper-parameters, reconstructed: fn2en_jax/recipe.py. On GPU/TPU add `--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  config = recipe.get_config(name='ck_plus', config='6class', num_folds=10)
  config.paper = dict(fn2en=98.6)
  return config
