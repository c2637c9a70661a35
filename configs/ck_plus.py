"""CK+, 8 classes (neutral, anger, contempt, disgust, fear, happy, sadness, surprise), 10 subject-independent
folds: the last 3 frames of each of the 327 labelled sequences plus its first frame as neutral (1308 faces).
Paper: scratch 88.7, VGG fine-tune 89.9, FN2EN 96.8.

  python -m fn2en_jax.data.build ck_plus/8class --manual_dir=$HOME/data/ck_plus --data_dir=$HOME/tensorflow_datasets
  python -m fn2en_jax.main --config=configs/ck_plus.py --workdir=$HOME/runs/ck_plus \
      --config.teacher.init=$HOME/face_nets/vgg_face --config.data.fold=-1

`--config.data.fold=-1` runs the 10 folds and writes kfold.md (`--config.data.fold=3`: fold 3 alone). The build
step is optional: with `--config.data.manual_dir=$HOME/data/ck_plus` the first run builds the dataset itself.
The face net: docs/face_nets.md (or train one, see fn2en_jax/recipe.py); hyper-parameters, reconstructed:
fn2en_jax/recipe.py. On GPU/TPU add `--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  config = recipe.get_config(name='ck_plus', config='8class', num_folds=10)
  config.paper = dict(scratch=88.7, face=89.9, fn2en=96.8)
  return config
