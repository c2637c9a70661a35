"""CK+48 (the common Kaggle copy of CK+: 981 48x48 faces), 7 classes (anger, contempt, disgust, fear, happy,
sadness, surprise), 10 subject-independent folds over the subjects in the file names. Not in the paper, so its
report has no paper column numbers. The 48x48 faces are upsampled to 224x224.

  python -m fn2en_jax.data.build ck_plus_48 --manual_dir=$HOME/data/ck_plus_48 --data_dir=$HOME/tensorflow_datasets
  python -m fn2en_jax.main --config=configs/ck_plus_48.py --workdir=$HOME/runs/ck_plus_48 \
      --config.teacher.init=$HOME/face_nets/vgg_face --config.data.fold=-1

where $HOME/data/ck_plus_48 holds CK+48/{anger,...,surprise}/*.png. `--config.data.fold=-1` runs the 10 folds and
writes kfold.md. The build step is optional: with `--config.data.manual_dir=$HOME/data/ck_plus_48` the first run
builds the dataset itself. The face net: docs/face_nets.md; hyper-parameters, reconstructed: fn2en_jax/recipe.py.
On GPU/TPU add `--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  config = recipe.get_config(name='ck_plus_48', config='', num_folds=10)
  config.paper = {}
  return config
